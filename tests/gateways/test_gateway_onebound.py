"""The Onebound gateway on its own: calls it builds and signs, answers it reads, and its error-action table."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from scrapy import Request
from scrapy.http import JsonResponse, Response
from scrapy.settings import Settings

from pipeline import settings as project_settings
from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.actions import ErrorActions
from pipeline.gateways.base import CALL_KEY_META_KEY, METHOD_META_KEY, gateway_class
from pipeline.gateways.onebound.gateway import OneboundGateway
from pipeline.pacing.apps import Credentials

ENDPOINT = "https://api-gw.onebound.cn"
KEY, SECRET = "ob-key-123", "ob-secret+/=456"


@pytest.fixture
def gateway() -> OneboundGateway:
    return OneboundGateway(Credentials(KEY, SECRET))


def _json(payload: Any) -> Response:
    return JsonResponse(ENDPOINT, body=json.dumps(payload, ensure_ascii=False).encode(), request=Request(ENDPOINT))


def test_the_short_name_and_an_import_path_both_work() -> None:
    assert gateway_class("onebound") is OneboundGateway
    assert gateway_class("pipeline.gateways.onebound.gateway.OneboundGateway") is OneboundGateway
    with pytest.raises(ConfigurationError, match="neither top nor onebound"):
        gateway_class("nope")


def test_search_is_a_get_without_credentials_until_it_is_signed(gateway: OneboundGateway) -> None:
    call = gateway.build_search("//g-search3.alicdn.com/img/bao/uploaded/i4/a.jpg", 2, "16")
    request = gateway.to_request(call, ENDPOINT + "/")
    assert request.method == "GET" and request.meta[METHOD_META_KEY] == "item_search_img"
    # A redirect would be built from the signed URL: gateway calls are never redirected.
    assert request.meta["dont_redirect"] is True and request.meta[CALL_KEY_META_KEY] == call.key
    query = parse_qs(urlsplit(request.url).query)
    assert urlsplit(request.url).path == "/taobao/item_search_img/"
    assert query == {"imgid": ["https://g-search3.alicdn.com/img/bao/uploaded/i4/a.jpg"], "page": ["2"],
                     "cat": ["16"], "lang": ["cn"], "cache": ["no"], "result_type": ["json"]}
    assert "key" not in query and "secret" not in query
    signed = gateway.sign(request)
    signed_query = parse_qs(urlsplit(signed.url).query)
    assert signed_query["key"] == [KEY] and signed_query["secret"] == [SECRET]
    assert {k: v for k, v in signed_query.items() if k not in ("key", "secret")} == query
    assert SECRET not in repr(gateway) and SECRET not in request.url


def test_upload_posts_the_picture_as_base64_and_takes_no_url(gateway: OneboundGateway) -> None:
    call = gateway.build_upload(b"jpeg")
    assert call.params == {"imgcode": base64.b64encode(b"jpeg").decode()}
    request = gateway.to_request(call, ENDPOINT)
    assert request.method == "POST" and request.url == ENDPOINT + "/taobao/upload_img/"
    assert gateway.uploads_local_images


def test_the_cache_and_language_settings_are_checked() -> None:
    assert OneboundGateway(Credentials("k", "s"), cache="yes", lang="en").build_search("https://a/b.jpg", 1, None) \
        .params["cache"] == "yes"
    with pytest.raises(ConfigurationError, match="IMAGESEARCH_ONEBOUND_CACHE"):
        OneboundGateway(Credentials("k", "s"), cache="maybe")
    with pytest.raises(ConfigurationError, match="IMAGESEARCH_ONEBOUND_LANG"):
        OneboundGateway.check_settings(Settings({"IMAGESEARCH_ONEBOUND_LANG": "fr"}))


ANSWER: dict[str, Any] = {
    "items": {
        "page": "1", "page_size": 20, "real_total_results": "37", "total_results": 37, "pagecount": "2",
        "item": [
            {"title": "<span class=H>连衣裙</span>", "num_iid": 652345678901, "price": 39.5, "promotion_price": "29.90",
             "orginal_price": "59.00", "sales": "1.2万+人付款", "pic_url": "//img.alicdn.com/a.jpg",
             "detail_url": "//https://detail.tmall.com/item.htm?id=652345678901", "seller_nick": "店", "seller_id": 1,
             "area": "浙江 杭州", "post_fee": "0.00"},
            {"title": "t", "num_iid": "652345678902", "price": "10", "detail_url": "https://item.taobao.com/item.htm?id=2"},
        ],
    },
    "error_code": "0000", "reason": "ok", "error": "", "api_info": "today:7 max:10000",
}


def test_an_answer_maps_onto_our_hit_fields(gateway: OneboundGateway) -> None:
    page = gateway.parse_search(_json(ANSWER))
    assert (page.total_results, page.page_size, page.page_count) == (37, 20, 2)
    first, second = page.items
    assert first["num_iid"] == 652345678901 and first["promotion_price"] == "29.90" and first["price"] == 39.5
    assert first["is_tmall"] is True and second["is_tmall"] is False
    assert "orginal_price" not in first and "seller_id" not in first and "area" not in first
    quota = gateway.daily_quota(_json(ANSWER))
    assert quota is not None and (quota.used, quota.limit, quota.spent) == (7, 10000, False)


@pytest.mark.parametrize("code", ["0000", 0, "0"])
def test_success_whatever_the_type_of_its_code(gateway: OneboundGateway, code: Any) -> None:
    assert gateway.parse_error(_json({**ANSWER, "error_code": code})) is None


@pytest.mark.parametrize(
    ("code", "action"),
    [("4013", "fatal"), (4016, "fatal"), ("4005", "fatal"), ("4029", "stop"), ("4000", "throttle"),
     ("5003", "retry"), ("2000", "seed_error"), ("9999", "seed_error")],
)
def test_error_codes_and_their_default_actions(gateway: OneboundGateway, code: Any, action: str) -> None:
    error = gateway.parse_error(_json({"error_code": code, "reason": "原因", "error": "detail"}))
    assert isinstance(error, GatewayError) and error.code == str(code) and error.msg == "原因"
    actions = ErrorActions.from_settings(Settings(vars(project_settings)), gateway.error_actions)
    assert actions.action_for(error) == action


def test_a_rate_limit_says_how_long_to_wait(gateway: OneboundGateway) -> None:
    error = GatewayError("4000", "", "too many calls: retry after 12 seconds")
    assert gateway.ban_seconds(error) == 12.0
    assert gateway.ban_seconds(GatewayError("4000", "", "调用太频繁，请10秒后再试")) == 10.0


def test_fatal_codes_say_what_to_fix(gateway: OneboundGateway) -> None:
    line = gateway.fatal_message(GatewayError("4013", "", "请登录"), "item_search_img")
    assert line.startswith("gateway refused the credentials") and "IMAGESEARCH_APP_SECRET" in line
    assert "recharge" in gateway.fatal_message(GatewayError("4016", "", "请充值"), "item_search_img")


@pytest.mark.parametrize(
    "answer",
    [
        {"error_code": "0000", "items": {"item": {"url": "//g-search3.alicdn.com/img/bao/uploaded/i4/x.jpg"}}},
        {"error_code": "0000", "items": {"url": "//g-search3.alicdn.com/img/bao/uploaded/i4/x.jpg"}},
        {"error_code": "0000", "status": "ok", "url": "//https://g-search3.alicdn.com/img/bao/uploaded/i4/x.jpg"},
    ],
)
def test_an_upload_answer_gives_the_url_to_search(gateway: OneboundGateway, answer: dict[str, Any]) -> None:
    assert gateway.parse_upload(_json(answer)) == "https://g-search3.alicdn.com/img/bao/uploaded/i4/x.jpg"


@pytest.mark.parametrize("body", [b"<html>busy</html>", b'{"items": {"it', b'{"something": 1}', b"[]"])
def test_broken_bodies_are_malformed(gateway: OneboundGateway, body: bytes) -> None:
    response = JsonResponse(ENDPOINT, body=body, request=Request(ENDPOINT))
    assert isinstance(gateway.parse_error(response), MalformedResponse)
    with pytest.raises(MalformedResponse):
        gateway.parse_search(response)
