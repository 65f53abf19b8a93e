"""The TOP gateway on its own: calls it builds and signs, answers it reads, and its error-action table."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from scrapy import Request
from scrapy.http import HtmlResponse, JsonResponse, Response
from scrapy.settings import Settings

from pipeline import settings as project_settings
from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.actions import ErrorActions
from pipeline.gateways.base import METHOD_META_KEY
from pipeline.gateways.top.gateway import TopGateway, ban_seconds, signed_params
from pipeline.gateways.top.signing import CHINA_TZ, TIMESTAMP_FORMAT, verify
from pipeline.gateways.top.wire import REMOTE_RETRY_SUB_CODES
from pipeline.pacing.apps import Credentials

ENDPOINT = "http://127.0.0.1:1/router/rest"
SECRET = "very-secret-value"


def _json(payload: Any) -> Response:
    return JsonResponse(ENDPOINT, body=json.dumps(payload).encode(), request=Request(ENDPOINT))


@pytest.fixture
def gateway() -> TopGateway:
    return TopGateway(Credentials("key1", SECRET), "md5")


def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode()))


def test_build_search_and_request(gateway: TopGateway) -> None:
    call = gateway.build_search("aGVsbG8=", 2, "50015374")
    assert call.method == "taobao.image.search"
    assert call.params == {"image_data": "aGVsbG8=", "page": "2", "cat": "50015374"}
    assert "aGVsbG8" not in repr(call)
    assert "cat" not in gateway.build_search("x", 1, None).params
    request = gateway.to_request(call, ENDPOINT, meta={"other": 1})
    assert request.method == "POST" and request.url == ENDPOINT
    assert request.meta[METHOD_META_KEY] == "taobao.image.search"
    assert request.meta["other"] == 1
    assert b"method=taobao.image.search" in request.body and b"image_data=aGVsbG8%3D" in request.body
    assert "aGVsbG8" not in repr(request) and "image_data" not in repr(request)


def test_build_upload(gateway: TopGateway) -> None:
    assert gateway.build_upload(b"jpg").params == {"image": base64.b64encode(b"jpg").decode()}
    assert not gateway.uploads_local_images


def test_parse_search_strings_numbers_and_nesting(gateway: TopGateway) -> None:
    item = {"title": "t", "num_iid": 123, "price": "39.50", "is_tmall": "true"}
    page = gateway.parse_search(_json({"image_search_response": {"items": {"item": [item]}, "total_results": "37"}}))
    assert page.items == [item] and page.total_results == 37
    page = gateway.parse_search(_json({"image_search_response": {"items": [item, item], "total_results": 2}}))
    assert len(page.items) == 2 and page.total_results == 2
    page = gateway.parse_search(_json({"image_search_response": {"total_results": "0"}}))
    assert page.items == [] and page.total_results == 0


def test_parse_upload_prefers_url_then_id(gateway: TopGateway) -> None:
    answer = {"upload_img_response": {"image": {"id": "u1", "url": "http://h/upload/u1.jpg"}, "request_id": "r"}}
    assert gateway.parse_upload(_json(answer)) == "http://h/upload/u1.jpg"
    assert gateway.parse_upload(_json({"upload_img_response": {"image": {"id": "u2"}}})) == "u2"


def test_error_response_becomes_gateway_error(gateway: TopGateway) -> None:
    response = _json({"error_response": {
        "code": 16, "msg": "Call Frequency Exceeded", "sub_code": "accesscontrol.limited-by-api-access-count",
        "sub_msg": "This ban will last for 3 more seconds", "request_id": "abc"}})
    with pytest.raises(GatewayError) as info:
        gateway.parse_search(response)
    error = info.value
    assert (error.code, error.sub_code) == ("16", "accesscontrol.limited-by-api-access-count")
    assert ban_seconds(error) == 3.0
    assert gateway.parse_error(response) is not None
    assert gateway.parse_error(_json({"image_search_response": {"items": []}})) is None


@pytest.mark.parametrize(
    "response",
    [
        HtmlResponse(ENDPOINT, body=b"<html><h1>System busy</h1></html>"),
        JsonResponse(ENDPOINT, body=b'{"image_search_response": {"items": {"it'),
        JsonResponse(ENDPOINT, body=b"[1, 2]"),
        JsonResponse(ENDPOINT, body=b'{"something": 1}'),
        Response(ENDPOINT, body=b"\x00\x01"),
    ],
)
def test_broken_bodies_are_malformed(gateway: TopGateway, response: Response) -> None:
    assert isinstance(gateway.parse_error(response), MalformedResponse)
    with pytest.raises(MalformedResponse):
        gateway.parse_search(response)


def test_unknown_sign_method_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="IMAGESEARCH_SIGN_METHOD"):
        TopGateway(Credentials("k", "s"), "sha1")


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_signing_adds_common_params_and_a_valid_sign_to_a_copy(sign_method: str) -> None:
    gateway = TopGateway(Credentials("key1", SECRET), sign_method)
    request = gateway.to_request(gateway.build_search("aW1n", 1, None), ENDPOINT)
    signed = gateway.sign(request)
    form = _form(signed)
    assert form["app_key"] == "key1" and form["sign_method"] == sign_method and form["v"] == "2.0"
    assert form["format"] == "json" and form["image_data"] == "aW1n" and form["method"] == "taobao.image.search"
    assert verify(form, SECRET)
    assert "sign" not in _form(request), "the request itself is never signed: only the copy that is sent"
    assert SECRET not in repr(gateway) and SECRET not in repr(signed) and SECRET not in str(signed.meta)


@pytest.mark.parametrize("body", [
    "method=taobao.image.search&image_data=aW1n%2Bx%2F%3D%3D&page=2",
    "method=m&q=a+b&%E5%93%81=%E8%A1%A3%20%26%3D&empty=&page=1",
    "method=m&page=1&timestamp=2001-01-01+00%3A00%3A00&page=3&sign=BAD&&v=9",
    "method=m&image_data=aW1n%2bx%2f",  # lower-case escapes, as some encoders write them
])
def test_the_signed_body_is_signed_params_of_the_unsigned_one(gateway: TopGateway, body: str) -> None:
    # The body's pieces are sent as they came (a picture is never quoted twice), yet what is sent and
    # signed is exactly signed_params of the parsed body, in its order.
    signed = _form_pairs(gateway.sign(Request(ENDPOINT, method="POST", body=body)))
    expected = signed_params(dict(parse_qsl(body, keep_blank_values=True)), "key1", SECRET, "md5")
    assert [name for name, _ in signed] == list(expected)
    form = dict(signed)
    assert {k: v for k, v in form.items() if k not in ("timestamp", "sign")} == \
        {k: v for k, v in expected.items() if k not in ("timestamp", "sign")}
    assert verify(form, SECRET)


def _form_pairs(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.body.decode(), keep_blank_values=True)


def test_a_retried_copy_gets_a_fresh_timestamp_and_sign(gateway: TopGateway) -> None:
    request = gateway.to_request(gateway.build_search("aW1n", 1, None), ENDPOINT)
    first = gateway.sign(request)
    stale = first.replace(body=urlencode({**_form(first), "timestamp": "2001-01-01 00:00:00", "sign": "BAD"}))
    pairs = parse_qsl(gateway.sign(stale).body.decode())
    form = dict(pairs)
    assert form["timestamp"] != "2001-01-01 00:00:00" and form["sign"] != "BAD"
    assert [key for key, _ in pairs].count("sign") == 1 and [key for key, _ in pairs].count("timestamp") == 1
    assert verify(form, SECRET)


def test_timestamp_is_gmt8_whatever_the_machine_zone(gateway: TopGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        signed = gateway.sign(gateway.to_request(gateway.build_search("aW1n", 1, None), ENDPOINT))
        sent = datetime.strptime(_form(signed)["timestamp"], TIMESTAMP_FORMAT).replace(tzinfo=CHINA_TZ)
        assert abs((datetime.now(CHINA_TZ) - sent).total_seconds()) < 5
    finally:
        monkeypatch.undo()
        time.tzset()


def test_signed_params_replace_old_common_params_and_verify() -> None:
    first = signed_params({"method": "taobao.image.search", "page": "1"}, "k", "s3cret", "hmac-sha256")
    assert verify(first, "s3cret") and first["v"] == "2.0" and first["format"] == "json"
    stale = {**first, "timestamp": "2001-01-01 00:00:00", "sign": "BAD"}
    again = signed_params(stale, "k", "s3cret", "hmac-sha256")
    assert again["timestamp"] != "2001-01-01 00:00:00" and verify(again, "s3cret")


# -- the error-action table --------------------------------------------------------------------

@pytest.fixture(scope="module")
def actions() -> ErrorActions:
    return ErrorActions.from_settings(Settings(vars(project_settings)), TopGateway.error_actions)


@pytest.mark.parametrize(
    "code, sub_code, action",
    [
        # the article's reading (sandbox --codes article)
        ("11", "isv.permission-api-package-limit", "fatal"),
        ("15", "isv.invalid-signature", "fatal"),
        ("16", "accesscontrol.limited-by-api-access-count", "throttle"),
        ("21", "isv.invalid-image-format", "seed_error"),
        ("10", "isp.service-unavailable", "retry"),
        ("22", "isv.invalid-method", "fatal"),
        ("29", "isv.appkey-not-exists", "fatal"),
        ("31", "isv.invalid-timestamp", "fatal"),
        ("40", "isv.missing-parameter:image_data", "fatal"),
        # real TOP's reading (sandbox --codes top)
        ("7", "accesscontrol.limited-by-api-access-count", "throttle"),  # the platform's limit on the method
        ("7", "accesscontrol.limited-by-app-api-access-count", "throttle"),  # the app's limit on the method
        ("7", "accesscontrol.limited-by-app-access-count", "stop"),  # the day's quota: waiting minutes won't help
        ("15", "isp.remote-service-error", "retry"),
        ("21", "isv.missing-method", "fatal"),
        ("25", "isv.invalid-signature", "fatal"),
        ("41", "isv.invalid-parameter:image_data", "seed_error"),
        ("99", "isp.unknown-error", "retry"),
        ("99", "isv.something", "seed_error"),
        ("malformed", "", "retry"),
    ],
)
def test_default_actions_cover_both_readings(actions: ErrorActions, code: str, sub_code: str, action: str) -> None:
    assert actions.action_for(GatewayError(code, sub_code)) == action


@pytest.mark.parametrize("sub_code", [*REMOTE_RETRY_SUB_CODES, *(f"{c}-tmall" for c in REMOTE_RETRY_SUB_CODES)])
@pytest.mark.parametrize("code", ["15", "10", "99"])
def test_the_remote_sub_codes_top_sdks_retry_are_retried(actions: ErrorActions, code: str, sub_code: str) -> None:
    assert actions.action_for(GatewayError(code, sub_code)) == "retry"


@pytest.mark.parametrize("code", ["15", "40", "41", "99"])
def test_isv_codes_are_the_callers_and_never_retried(actions: ErrorActions, code: str) -> None:
    assert actions.action_for(GatewayError(code, "isv.top-remote-connection-timeout")) != "retry"


@pytest.mark.parametrize(
    "code, msg, action",
    [
        # Gateways that send a bare code: the msg tells the two readings apart.
        ("21", "图片格式不支持", "seed_error"),  # the article's 21: one bad image must not stop the crawl
        ("21", "Invalid image format", "seed_error"),
        ("21", "Missing Method", "fatal"),  # real TOP's 21
        ("15", "签名错误", "fatal"),  # the article's 15
        ("15", "Remote service error", "retry"),  # real TOP's 15
    ],
)
def test_a_bare_code_is_read_by_its_msg(actions: ErrorActions, code: str, msg: str, action: str) -> None:
    assert actions.action_for(GatewayError(code, "", msg)) == action


def test_user_actions_merge_over_base_most_specific_first() -> None:
    settings = Settings(vars(project_settings))
    settings.set(
        "IMAGESEARCH_ERROR_ACTIONS", '{"15": "seed_error", "41:isv.invalid-parameter:page": "fatal", "7": null}'
    )
    actions = ErrorActions.from_settings(settings, TopGateway.error_actions)
    assert actions.action_for(GatewayError("15", "isv.invalid-signature")) == "seed_error"
    assert actions.action_for(GatewayError("15", "isp.remote")) == "retry"
    assert actions.action_for(GatewayError("41", "isv.invalid-parameter:page")) == "fatal"
    assert actions.action_for(GatewayError("41", "isv.invalid-parameter:image_data")) == "seed_error"
    assert actions.action_for(GatewayError("7", "accesscontrol.x")) == "seed_error"


def test_unknown_action_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="use one of"):
        ErrorActions({"15": "explode"})


def test_fatal_message_says_what_to_fix(gateway: TopGateway) -> None:
    line = gateway.fatal_message(GatewayError("15", "isv.invalid-signature", "Signature Error"), "taobao.image.search")
    assert line.startswith("gateway refused the credentials (code 15 isv.invalid-signature")
    assert "IMAGESEARCH_APP_SECRET" in line and "\n" not in line
    line = gateway.fatal_message(GatewayError("11", "isv.permission-api-package-limit"), "taobao.upload.img")
    assert "permission" in line


@pytest.mark.parametrize(
    ("sub_code", "words"),
    [
        ("accesscontrol.limited-by-app-access-count", "this app's call quota for the day"),
        ("accesscontrol.limited-by-api-access-count", "the platform's call limit on this method"),
        ("accesscontrol.limited-by-app-api-access-count", "this app's call limit on this method"),
    ],
)
def test_each_code_7_limit_is_named(gateway: TopGateway, sub_code: str, words: str) -> None:
    assert gateway.limit_name(GatewayError("7", sub_code)) == words
