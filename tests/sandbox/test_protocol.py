"""The TOP router protocol over real HTTP: signatures, timestamps, app keys, permissions, quota, code tables."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.gateways.top.signing import sign, top_timestamp
from sandbox.testing import SandboxProcess, get, post, signed_params

SEARCH = "taobao.image.search"
UPLOAD = "taobao.upload.img"
BAN_RE = re.compile(r"^This ban will last for (\d+) more seconds$")


@pytest.fixture(scope="module")
def article_sb():
    """Article code table; app ``quota`` may make 3 calls per 2 s; app ``deny`` may not upload."""
    with SandboxProcess(
        "--app", "test:test", "--app", "quota:quota:3/2", "--app", "deny:deny", "--deny", "deny:" + UPLOAD
    ) as process:
        yield process


@pytest.fixture(scope="module")
def top_sb():
    """Real TOP's code table, same apps."""
    with SandboxProcess(
        "--codes", "top", "--app", "test:test", "--app", "quota:quota:3/2", "--app", "deny:deny",
        "--deny", "deny:" + UPLOAD,
    ) as process:
        yield process


@pytest.fixture(scope="module")
def upload_id(article_sb, catalog_image_b64):
    """Image id of a catalogue image uploaded to ``article_sb`` (small enough for GET query strings)."""
    answer = post(article_sb.endpoint, signed_params(UPLOAD, image=catalog_image_b64(3)))
    return answer["upload_img_response"]["image"]["id"]


def error_of(answer):
    assert set(answer) == {"error_response"}, answer
    error = answer["error_response"]
    assert set(error) == {"code", "msg", "sub_code", "sub_msg", "request_id"}
    assert isinstance(error["code"], int) and error["msg"] and error["request_id"]
    return error


def search_ok(answer):
    assert set(answer) == {"image_search_response"}, answer
    return answer["image_search_response"]


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_each_sign_method_is_accepted(article_sb, catalog_image_b64, sign_method):
    answer = post(article_sb.endpoint, signed_params(SEARCH, sign_method=sign_method, image_data=catalog_image_b64(0)))
    assert len(search_ok(answer)["items"]["item"]) == 20


@pytest.mark.parametrize(("fixture", "code"), [("article_sb", 15), ("top_sb", 25)])
def test_wrong_signature_is_refused(request, catalog_image_b64, fixture, code):
    sb = request.getfixturevalue(fixture)
    params = signed_params(SEARCH, image_data=catalog_image_b64(0), secret="not-the-secret")
    error = error_of(post(sb.endpoint, params))
    assert (error["code"], error["sub_code"]) == (code, "isv.invalid-signature")
    # A parameter changed after signing is just as wrong.
    params = signed_params(SEARCH, image_data=catalog_image_b64(0), page="1")
    params["page"] = "2"
    assert error_of(post(sb.endpoint, params))["code"] == code


def test_article_signature_error_has_no_isp_sub_code_and_missing_sign_is_refused(article_sb, upload_id):
    params = signed_params(SEARCH, image_data=upload_id)
    del params["sign"]
    error = error_of(post(article_sb.endpoint, params))
    assert error["code"] == 15 and not error["sub_code"].startswith("isp.")


def test_response_is_utf8_json_with_http_200_even_for_errors(article_sb):
    params = signed_params(SEARCH, image_data="x", secret="wrong")
    request = urllib.request.Request(article_sb.endpoint, data=urllib.parse.urlencode(params).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json;charset=UTF-8"


def test_get_with_query_string_works(article_sb, upload_id):
    answer = get(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, sign_method="hmac"))
    assert search_ok(answer)["total_results"] == "200"


def test_multipart_post_works(article_sb, upload_id):
    params = signed_params(SEARCH, image_data=upload_id)
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in params.items()
    ) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        article_sb.endpoint, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        import json

        assert search_ok(json.load(response))["total_results"] == "200"


@pytest.mark.parametrize("minutes", [-11, 11])
def test_stale_and_future_timestamps_are_refused(article_sb, upload_id, minutes):
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    error = error_of(
        post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, timestamp=top_timestamp(moment)))
    )
    assert error["code"] == 31


@pytest.mark.parametrize("minutes", [-9, 9])
def test_timestamps_within_ten_minutes_are_accepted(article_sb, upload_id, minutes):
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    search_ok(post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, timestamp=top_timestamp(moment))))


def test_epoch_millisecond_timestamp_is_accepted(article_sb, upload_id):
    millis = str(int(time.time() * 1000))
    search_ok(post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, timestamp=millis)))


def test_utc_wall_clock_timestamp_is_eight_hours_off_and_refused(article_sb, upload_id):
    utc_text = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert error_of(
        post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, timestamp=utc_text))
    )["code"] == 31


@pytest.mark.parametrize(
    ("change", "article_code", "top_code"),
    [
        ({"timestamp": ""}, 30, 30),
        ({"timestamp": "yesterday"}, 31, 31),
        ({"app_key": ""}, 28, 28),
        ({"app_key": "nobody"}, 29, 29),
        ({"method": ""}, 22, 21),
        ({"method": "taobao.item.get"}, 22, 22),
        ({"sign_method": "sha1"}, 41, 41),
        ({"v": "3.0"}, 41, 41),
        ({"page": "abc"}, 41, 41),
        ({"page": "0"}, 41, 41),
        ({"image_data": ""}, 40, 40),
    ],
)
def test_bad_common_and_business_parameters_have_their_codes(
    article_sb, top_sb, upload_id, change, article_code, top_code,
):
    for sb, code in ((article_sb, article_code), (top_sb, top_code)):
        params = dict(signed_params(SEARCH, image_data=upload_id, page="1"))
        params.update(change)
        params = {k: v for k, v in params.items() if v != ""}
        params["sign"] = sign(
            params,
            "test",
            params.get("sign_method", "md5") if params.get("sign_method") in ("md5", "hmac", "hmac-sha256") else "md5",
        )
        error = error_of(post(sb.endpoint, params))
        assert error["code"] == code, (sb.args, change, error)


def test_missing_image_data_names_the_parameter(top_sb):
    error = error_of(post(top_sb.endpoint, signed_params(SEARCH)))
    assert (error["code"], error["sub_code"]) == (40, "isv.missing-parameter:image_data")


def test_checks_run_in_top_order_app_key_before_signature(article_sb):
    params = signed_params(SEARCH, image_data="x", app_key="nobody", secret="wrong")
    assert error_of(post(article_sb.endpoint, params))["code"] == 29
    params = signed_params(SEARCH, image_data="x", secret="wrong", timestamp="2001-01-01 00:00:00")
    assert error_of(post(article_sb.endpoint, params))["code"] == 31


@pytest.mark.parametrize(("fixture", "code"), [("article_sb", 21), ("top_sb", 41)])
def test_undecodable_image_is_an_image_format_error(request, fixture, code):
    sb = request.getfixturevalue(fixture)
    import base64

    expected_sub = "isv.invalid-image-format" if code == 21 else "isv.invalid-parameter:image_data"
    for data in (b"this is not an image", b"II*\x00" + b"\x00" * 64, b"%PDF-1.4 not an image"):
        error = error_of(post(sb.endpoint, signed_params(SEARCH, image_data=base64.b64encode(data).decode())))
        assert (error["code"], error["sub_code"]) == (code, expected_sub)
    error = error_of(post(sb.endpoint, signed_params(SEARCH, image_data="%%% not base64 %%%")))
    assert error["code"] == code


def test_decompression_bomb_is_refused_without_decoding(article_sb):
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A PNG header claiming 30000 x 30000 pixels.
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    started = time.monotonic()
    error = error_of(post(article_sb.endpoint, signed_params(SEARCH, image_data=base64.b64encode(png).decode())))
    assert error["code"] == 21
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("fixture", "code"), [("article_sb", 11), ("top_sb", 11)])
def test_denied_method_is_refused_with_code_11_and_other_methods_still_work(request, catalog_image_b64, fixture, code):
    sb = request.getfixturevalue(fixture)
    image = catalog_image_b64(1)
    error = error_of(post(sb.endpoint, signed_params(UPLOAD, app_key="deny", secret="deny", image=image)))
    assert (error["code"], error["sub_code"]) == (code, "isv.permission-api-package-limit")
    search_ok(post(sb.endpoint, signed_params(SEARCH, app_key="deny", secret="deny", image_data=image)))


@pytest.mark.parametrize(("fixture", "code"), [("article_sb", 16), ("top_sb", 7)])
def test_quota_is_a_sliding_window_and_refusals_do_not_count(request, catalog_image_b64, fixture, code):
    sb = request.getfixturevalue(fixture)
    image = catalog_image_b64(2)
    refused_before = sb.stats()["quota_refused"]

    def search():
        return post(sb.endpoint, signed_params(SEARCH, app_key="quota", secret="quota", image_data=image))

    first = time.monotonic()
    for _ in range(3):  # search and upload share the quota
        search_ok(search())
    for _ in range(3):
        error = error_of(search())
        assert (error["code"], error["sub_code"]) == (code, "accesscontrol.limited-by-api-access-count")
        match = BAN_RE.match(error["sub_msg"])
        assert match and 1 <= int(match.group(1)) <= 2, error["sub_msg"]
    upload = post(sb.endpoint, signed_params(UPLOAD, app_key="quota", secret="quota", image=image))
    assert error_of(upload)["code"] == code
    assert sb.stats()["quota_refused"] - refused_before == 4
    # Another app is not affected.
    search_ok(post(sb.endpoint, signed_params(SEARCH, image_data=image)))
    # When the window has moved past the first calls, calls are allowed again; the refused ones cost nothing.
    time.sleep(max(0.0, first + 2.1 - time.monotonic()))
    for _ in range(3):
        search_ok(search())
    assert error_of(search())["code"] == code


def test_quota_counts_failed_business_calls_too(make_sandbox):
    sb = make_sandbox("--app", "q:q:2/60")
    assert error_of(post(sb.endpoint, signed_params(SEARCH, app_key="q", secret="q")))["code"] == 40
    assert error_of(post(sb.endpoint, signed_params(SEARCH, app_key="q", secret="q", image_data="eA==")))["code"] == 21
    error = error_of(post(sb.endpoint, signed_params(SEARCH, app_key="q", secret="q", image_data="eA==")))
    assert error["code"] == 16
    assert 55 <= int(BAN_RE.match(error["sub_msg"]).group(1)) <= 60


def test_default_app_has_the_article_quota(make_sandbox):
    sb = make_sandbox()
    stats = sb.stats()
    assert stats["calls"]["total"] == 0 and stats["quota_refused"] == 0
    assert error_of(post(sb.endpoint, signed_params(SEARCH, app_key="test", secret="wrong")))["code"] == 15
    from sandbox.config import SandboxConfig

    app = SandboxConfig().app("test")
    assert (app.secret, app.calls, app.seconds) == ("test", 1000, 3600)


def test_stats_count_every_router_request_valid_or_not(make_sandbox, catalog_image_b64):
    sb = make_sandbox("--app", "test:test", "--app", "other:other")
    image = catalog_image_b64(4)
    post(sb.endpoint, signed_params(SEARCH, image_data=image))
    post(sb.endpoint, signed_params(SEARCH, image_data=image, app_key="other", secret="other"))
    post(sb.endpoint, signed_params(UPLOAD, image=image))
    post(sb.endpoint, signed_params(SEARCH, image_data=image, secret="wrong"))
    post(sb.endpoint, {"nothing": "at all", "format": "json"})
    stats = sb.stats()
    assert stats["calls"]["total"] == 5
    assert stats["calls"]["by_method"] == {SEARCH: 3, UPLOAD: 1}
    assert stats["calls"]["by_app"] == {"test": 3, "other": 1}
    assert stats["calls"]["by_protocol"] == {"top": 5}
    assert stats["errors"] == {"15": 1, "22": 1}
    assert stats["faults"] == {"5xx": 0, "slow": 0, "garbage": 0, "drop": 0, "remote": 0}
    # Images and the stats page itself are not router calls.
    urllib.request.urlopen(sb.url + "/_sandbox/stats").close()
    assert sb.stats()["calls"]["total"] == 5
    sb.reset()
    assert sb.stats()["calls"]["total"] == 0


def test_empty_sign_method_counts_as_absent_so_md5(article_sb, upload_id):
    # Empty-valued parameters are left out of the signing string: the client signed as if
    # sign_method were missing, which TOP reads as md5.
    params = {k: v for k, v in signed_params(SEARCH, image_data=upload_id).items() if k != "sign"}
    params["sign_method"] = ""
    params["sign"] = sign(params, "test", "md5")
    search_ok(post(article_sb.endpoint, params))
    params["sign"] = sign(params, "test", "hmac")
    assert error_of(post(article_sb.endpoint, params))["code"] == 15


@pytest.mark.parametrize(("fixture", "code"), [("article_sb", 21), ("top_sb", 41)])
def test_malformed_url_in_image_data_is_an_image_error_not_an_internal_one(request, fixture, code):
    sb = request.getfixturevalue(fixture)
    for image_data in ("http://[::1/x", "//[::1/upload/x.jpg", "https://[not-an-ip]/img/1.jpg"):
        error = error_of(post(sb.endpoint, signed_params(SEARCH, image_data=image_data)))
        assert error["code"] == code and "not a valid URL" in error["sub_msg"], error
    assert "Traceback" not in sb.stderr()


@pytest.mark.parametrize("page", ["9" * 5000, "9" * 19, "٢", "²", " 2", "2 ", "+2", "-1", "1.0", "0x1"])
def test_page_must_be_plain_ascii_digits(article_sb, top_sb, upload_id, page):
    for sb in (article_sb, top_sb):
        error = error_of(post(sb.endpoint, signed_params(SEARCH, image_data=upload_id, page=page)))
        assert (error["code"], error["sub_code"]) == (41, "isv.invalid-parameter:page"), (page[:20], error)
        assert len(error["sub_msg"]) < 200
    # Long but sane page numbers are just past the end.
    response = search_ok(post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, page="9" * 18)))
    assert response["items"] == {"item": []}
    assert search_ok(post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, page="02")))["items"]["item"]


def _at_start_of_a_second() -> datetime:
    """Now, just after a wall-clock second starts, so a request sent now arrives within the same second."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
    return datetime.now(UTC)


@pytest.mark.parametrize(("seconds", "accepted"), [(-600, True), (600, True), (-601, False), (601, False)])
def test_ten_minute_skew_boundary_is_symmetric(article_sb, upload_id, seconds, accepted):
    moment = _at_start_of_a_second() + timedelta(seconds=seconds)
    answer = post(article_sb.endpoint, signed_params(SEARCH, image_data=upload_id, timestamp=top_timestamp(moment)))
    if accepted:
        search_ok(answer)
    else:
        assert error_of(answer)["code"] == 31


def test_head_does_not_run_the_call_or_charge_quota(make_sandbox, catalog_image_b64):
    sb = make_sandbox("--app", "h:h:1/60")
    params = signed_params(SEARCH, app_key="h", secret="h", image_data="0" * 40)
    request = urllib.request.Request(sb.endpoint + "?" + urllib.parse.urlencode(params), method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 405 and raised.value.headers["Allow"] == "GET, POST"
    assert sb.stats()["calls"]["total"] == 0
    # The app's one call an hour is still there.
    search_ok(post(sb.endpoint, signed_params(SEARCH, app_key="h", secret="h", image_data=catalog_image_b64(0))))


def test_oversized_body_is_refused_without_being_parsed(article_sb, top_sb):
    from sandbox.server import MAX_BODY_BYTES

    params = signed_params(SEARCH, image_data="A" * (MAX_BODY_BYTES + 1024))
    for sb in (article_sb, top_sb):
        # The body is never parsed, so its format=json is unread: JSON is asked for in the query string.
        error = error_of(post(sb.endpoint + "?format=json", params))
        assert (error["code"], error["sub_code"]) == (41, "isv.invalid-parameter:body")
        assert str(MAX_BODY_BYTES) in error["sub_msg"]
    # A chunked body announces no length: it is counted as it arrives.
    conn = http.client.HTTPConnection("127.0.0.1", article_sb.port, timeout=30)
    head = urllib.parse.urlencode(signed_params(SEARCH)).encode() + b"&image_data="
    body = iter([head] + [b"A" * (1 << 20)] * (MAX_BODY_BYTES // (1 << 20) + 1))
    conn.request("POST", "/router/rest?format=json", body=body, encode_chunked=True,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    assert response.status == 200
    assert error_of(json.loads(response.read()))["sub_code"] == "isv.invalid-parameter:body"
    conn.close()


def test_image_over_the_pixel_limit_is_refused_before_it_is_decoded(article_sb):
    import base64
    import io

    from PIL import Image

    from sandbox.catalog import MAX_PIXELS

    assert MAX_PIXELS == 16_000_000

    def webp(side: int) -> str:
        buffer = io.BytesIO()
        Image.new("RGB", (side, side), (30, 160, 60)).save(buffer, "WEBP", lossless=True)
        return base64.b64encode(buffer.getvalue()).decode()

    # Lossless WebP decodes at full scale: one just over the limit must not be decoded at all.
    error = error_of(post(article_sb.endpoint, signed_params(SEARCH, image_data=webp(4001))))
    assert error["code"] == 21 and "too large" in error["sub_msg"]
    # Not decoded, not even begun: a PNG over the limit cut off after its header is refused for its size,
    # which only its header tells (decoding it would have found it truncated).
    buffer = io.BytesIO()
    Image.new("RGB", (4001, 4001), (30, 160, 60)).save(buffer, "PNG")
    header_only = base64.b64encode(buffer.getvalue()[:100]).decode()
    error = error_of(post(article_sb.endpoint, signed_params(SEARCH, image_data=header_only)))
    assert error["code"] == 21 and "too large" in error["sub_msg"], error
    search_ok(post(article_sb.endpoint, signed_params(SEARCH, image_data=webp(4000))))
