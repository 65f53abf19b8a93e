"""The aliyun gateway without a crawl: its signatures against Alibaba Cloud's published examples and the
official SDK's own signing code, the calls it builds, how it reads answers, and its error table."""

from __future__ import annotations

import hashlib
import json
import random
import string
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from scrapy.http import TextResponse
from scrapy.settings import Settings

from pipeline.errors import ConfigurationError, GatewayError, MalformedResponse
from pipeline.gateways.actions import FATAL, RETRY, SEED_ERROR, STOP, THROTTLE, ErrorActions
from pipeline.gateways.aliyun.gateway import ERROR_ACTIONS, AliyunGateway, AliyunOptions
from pipeline.gateways.aliyun.signing import Authorization, sha256_hex, v2_signature, v3_authorization, v3_signature
from pipeline.images import ImageRef
from pipeline.pacing.apps import Credentials

# -- signatures ------------------------------------------------------------------------------------

#: Alibaba Cloud's published RPC (V2) example: DescribeRegions with AccessKey testid / testsecret. The
#: documentation has given it with the parameter ``Timestamp`` and, in an older copy, ``TimeStamp``.
_V2_EXAMPLE = {
    "Format": "XML", "AccessKeyId": "testid", "Action": "DescribeRegions", "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "Version": "2014-05-26", "SignatureVersion": "1.0",
}


@pytest.mark.parametrize("name, expected", [("Timestamp", "OLeaidS1JvxuMvnyHOwuJ+uX5qY="),
                                            ("TimeStamp", "CT9X0VtwR86fNWSnsc6v8YGOjuE=")])
def test_the_rpc_signature_is_alibaba_clouds_published_example(name: str, expected: str) -> None:
    params = {**_V2_EXAMPLE, name: "2016-02-23T12:46:24Z"}
    assert v2_signature("GET", params, "testsecret") == expected


def test_the_v3_signature_is_alibaba_clouds_published_example() -> None:
    # "V3 request structure and signature": a POST with two query parameters and no body, signed
    # with YourAccessKeyId / YourAccessKeySecret.
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com", "x-acs-action": "RunInstances", "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T09:01:01Z", "x-acs-signature-nonce": "d410180a5abf7fe235dd9b74aca91fc0",
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    query = [("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"), ("RegionId", "cn-shanghai")]
    assert v3_authorization("POST", "/", query, headers, "YourAccessKeyId", "YourAccessKeySecret") == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"
    )


def _random_text(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + " -_.~*+/=&%:,'!()" + "图片搜索淘宝天猫" + "é€😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))


@pytest.mark.parametrize("seed", range(20))
def test_both_signatures_agree_with_the_official_sdks_own_code(seed: int) -> None:
    rng = random.Random(seed)
    params = {f"P{_random_text(rng)}": _random_text(rng) for _ in range(rng.randint(1, 8))}
    secret = _random_text(rng) or "s"
    assert v2_signature("POST", params, secret) == SdkUtils.get_rpcsignature(params, "POST", secret)

    body = "&".join(f"{k}={v}" for k, v in params.items()).encode("utf-8")
    headers = {
        "host": "imagesearch.cn-shanghai.aliyuncs.com", "content-type": "application/x-www-form-urlencoded",
        "x-acs-action": "SearchByPic", "x-acs-version": "2021-05-01", "x-acs-date": "2026-12-01T08:00:00Z",
        "x-acs-signature-nonce": f"{rng.getrandbits(64):x}", "x-acs-content-sha256": sha256_hex(body),
    }
    # Parameter names are plain words (the SDK percent-encodes the values of the query, not its names).
    query = {f"Q{rng.choice(string.ascii_letters)}{i}": _random_text(rng) for i in range(rng.randint(0, 3))}
    ours = v3_authorization("POST", "/", list(query.items()), headers, "LTAI5tTestKey", secret)
    request = SimpleNamespace(pathname="/", query=query, headers=headers, method="POST")
    assert ours == SdkUtils.get_authorization(request, "ACS3-HMAC-SHA256", sha256_hex(body), "LTAI5tTestKey", secret)


def test_a_signed_call_carries_a_v3_signature_over_what_is_sent_and_never_the_secret() -> None:
    gateway = AliyunGateway(Credentials("LTAI5tKey", "the-secret-value"))
    request = gateway.sign(gateway.to_request(gateway.build_search("https://img.alicdn.com/a.jpg", 2, "16"),
                                              "https://imagesearch.cn-shanghai.aliyuncs.com"))
    headers = {k.decode().lower(): b",".join(v).decode() for k, v in request.headers.items()}
    authorization = Authorization.parse(headers["authorization"])
    assert authorization is not None and authorization.key_id == "LTAI5tKey"
    assert headers["host"] == "imagesearch.cn-shanghai.aliyuncs.com"
    assert headers["x-acs-content-sha256"] == sha256_hex(request.body)
    assert headers["content-type"] == "application/x-www-form-urlencoded"  # once: it is signed
    expected = v3_signature("POST", "/", [], headers, authorization.signed_headers, headers["x-acs-content-sha256"],
                            "the-secret-value")
    assert authorization.signature == expected
    sent = request.body + request.url.encode() + b"".join(name + b"".join(v) for name, v in request.headers.items())
    assert b"the-secret-value" not in sent
    body = dict(parse_qsl(request.body.decode()))
    assert body == {"PicUrl": "https://img.alicdn.com/a.jpg", "Start": "20", "Num": "20", "CategoryId": "16",
                    "Crop": "true", "Fields": ",".join(gateway.options.fields)}


def test_the_v2_signature_goes_in_the_query_over_the_body_too() -> None:
    gateway = AliyunGateway(Credentials("LTAI5tKey", "sec"), AliyunOptions(signature="v2"))
    request = gateway.sign(gateway.to_request(gateway.build_search("//img.alicdn.com/a.jpg", 1, None),
                                              "https://imagesearch.cn-shanghai.aliyuncs.com/"))
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert query["Action"] == "SearchByUrl" and query["Version"] == "2021-05-01"
    assert query["SignatureMethod"] == "HMAC-SHA1" and query["AccessKeyId"] == "LTAI5tKey"
    body = dict(parse_qsl(request.body.decode()))
    assert body["PicUrl"] == "https://img.alicdn.com/a.jpg"
    signed = {k: v for k, v in {**body, **query}.items() if k != "Signature"}
    assert query["Signature"] == SdkUtils.get_rpcsignature(signed, "POST", "sec")


# -- calls ---------------------------------------------------------------------------------------------


def test_pages_are_start_num_windows_and_end_at_start_499(tmp_path: Any) -> None:
    gateway = AliyunGateway(Credentials("k", "s"), AliyunOptions(num=10))
    photo = ImageRef(tmp_path / "p.jpg", "0" * 64, 1024, 10_000_000)
    call = gateway.build_search(photo, 3, None)
    assert call.method == "SearchByPic" and call.image_param == "PicContent"
    assert (call.params["Start"], call.params["Num"]) == ("20", "10")
    assert gateway.last_page == 50  # Start 490
    with pytest.raises(ValueError, match="Start 499"):
        gateway.build_search(photo, 51, None)


@pytest.mark.parametrize("original, sent, reason", [
    ((300, 300), (300, 300), None),
    ((80, 60), (80, 60), "image_too_small"),
    ((2000, 150), (1024, 77), "image_unsupported"),  # a panorama our own scaling would make too thin
    ((4000, 4000), (4000, 4000), None),
])
def test_a_picture_the_service_would_refuse_is_said_before_any_call(original: tuple[int, int], sent: tuple[int, int],
                                                                     reason: str | None) -> None:
    problem = AliyunGateway(Credentials("k", "s")).picture_problem(original, sent)
    assert (problem[0] if problem else None) == reason
    if problem:
        assert f"{original[0]}x{original[1]}" in problem[1] and "not sent" in problem[1]
    if reason == "image_unsupported":
        assert "IMAGESEARCH_MAX_IMAGE_SIDE" in problem[1]


@pytest.mark.parametrize("name, value, says", [
    ("IMAGESEARCH_ALIYUN_NUM", "21", "1 to 20"),
    ("IMAGESEARCH_ALIYUN_NUM", "ten", "1 to 20"),
    ("IMAGESEARCH_ALIYUN_PID", "12345", "mm_<account>_<site>_<adzone>"),
    ("IMAGESEARCH_ALIYUN_USER_TYPE", "2", "1 (tmall) or 0 (taobao)"),
    ("IMAGESEARCH_ALIYUN_FIELDS", "Title,Price", "'Price'"),
    ("IMAGESEARCH_ALIYUN_REGION", "1,2,3", "x1,x2,y1,y2"),
    ("IMAGESEARCH_ALIYUN_SIGNATURE", "v4", "v3 (the default) or v2"),
])
def test_a_setting_that_cannot_work_is_one_line_naming_it(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        AliyunOptions.from_settings(Settings({name: value}))
    assert name in str(raised.value) and says in str(raised.value) and "\n" not in str(raised.value)


def test_item_id_is_always_asked_for_and_user_type_takes_words() -> None:
    options = AliyunOptions.from_settings(Settings({"IMAGESEARCH_ALIYUN_FIELDS": "Title,Volume",
                                                    "IMAGESEARCH_ALIYUN_USER_TYPE": "Tmall"}))
    assert options.fields == ("ItemId", "Title", "Volume") and options.user_type == "1"


# -- answers -------------------------------------------------------------------------------------------


def _response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> TextResponse:
    return TextResponse("https://imagesearch.cn-shanghai.aliyuncs.com/", status=status, encoding="utf-8",
                        body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})})


def test_an_answer_maps_onto_our_hit_fields_with_the_rank_score() -> None:
    gateway = AliyunGateway(Credentials("k", "s"), AliyunOptions(num=2))
    page = gateway.parse_search(_response({"RequestId": "R", "Success": True, "Code": 0, "Message": "success", "Data": {
        "Auctions": [
            {"RankScore": 0.93, "Result": {"ItemId": "652345678901", "Title": "连衣裙",
                                           "PicUrl": "//img.alicdn.com/a.jpg",
                                           "Url": "https://detail.tmall.com/item.htm?id=652345678901",
                                           "ZkFinalPrice": "79.00", "ReservePrice": "99.00",
                                           "PriceAfterCoupon": "69.00", "Volume": 1200, "Nick": "店", "UserType": 1}},
            {"RankScore": "0.5", "Result": {"ItemId": "5", "ReservePrice": "10.00", "PriceAfterCoupon": "10.00",
                                            "ShopTitle": "小店", "UserType": 0}},
        ]}}))
    assert page.total_results is None and page.page_size == 2
    first, second = page.items
    assert first == {"num_iid": "652345678901", "title": "连衣裙", "pic_url": "//img.alicdn.com/a.jpg",
                     "detail_url": "https://detail.tmall.com/item.htm?id=652345678901", "price": "79.00",
                     "sales": 1200, "sales_kind": "monthly", "seller_nick": "店", "is_tmall": True,
                     "coupon_price": "69.00", "score": 0.93}
    # No discount: the list price is the price; a coupon that lowers nothing is no coupon price; a shop's
    # title is no seller's nick.
    assert second == {"num_iid": "5", "price": "10.00", "is_tmall": False, "score": 0.5}


@pytest.mark.parametrize("status, body, headers, code, action, ban", [
    (400, {"Code": "Throttling.User", "Message": "Request was denied due to user flow control."},
     {"x-acs-retry-after": "250"}, "Throttling.User", THROTTLE, 0.25),
    (400, {"Code": "Throttling.User", "Message": "flow control"}, {}, "Throttling.User", THROTTLE, 1.0),
    (403, {"Code": "DeniedRequest", "Message": "instance flow control"}, {}, "DeniedRequest", THROTTLE, 1.0),
    (404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."}, {},
     "InvalidAccessKeyId.NotFound", FATAL, None),
    (400, {"Code": "SignatureDoesNotMatch", "Message": "no match"}, {}, "SignatureDoesNotMatch", FATAL, None),
    (400, {"Code": "InvalidTimeStamp.Expired", "Message": "expired"}, {}, "InvalidTimeStamp.Expired", FATAL, None),
    (400, {"Code": "SignatureNonceUsed", "Message": "used"}, {}, "SignatureNonceUsed", RETRY, None),
    (503, {"Code": "ServiceUnavailable", "Message": "temporary"}, {}, "ServiceUnavailable", RETRY, None),
    (500, {"Code": "InternalError", "Message": "unknown"}, {}, "InternalError", RETRY, None),
    (400, {"Code": "UnsupportedPicPixels", "Message": "The specified pixels is not supported."}, {},
     "UnsupportedPicPixels", SEED_ERROR, None),
    (400, {"Code": "InvalidPicFormat", "Message": "cannot decode"}, {}, "InvalidPicFormat", SEED_ERROR, None),
    (403, {"Code": "QuotaExhausted", "Message": "day"}, {}, "QuotaExhausted", STOP, None),
    (200, {"Success": False, "Code": 1001, "Message": "business error"}, {}, "1001", SEED_ERROR, None),
])
def test_each_error_answer_gets_its_action(status: int, body: dict[str, Any], headers: dict[str, str], code: str,
                                           action: str, ban: float | None) -> None:
    gateway = AliyunGateway(Credentials("k", "s"))
    error = gateway.parse_error(_response({"RequestId": "5E0F-REQ", **body}, status, headers))
    assert isinstance(error, GatewayError) and error.code == code
    assert f"HTTP {status}" in error.describe() and "5E0F-REQ" in error.describe()
    assert ErrorActions(ERROR_ACTIONS).action_for(error) == action
    assert gateway.ban_seconds(error) == ban
    assert status == 200 or status in gateway.error_statuses


def test_a_body_that_is_not_the_apis_is_malformed() -> None:
    gateway = AliyunGateway(Credentials("k", "s"))
    assert isinstance(gateway.parse_error(_response({"hello": 1})), MalformedResponse)
    assert isinstance(gateway.parse_error(_response({"Message": "x"}, 503)), MalformedResponse)
    html = TextResponse("https://x/", status=502, body=b"<html>bad gateway</html>", encoding="utf-8")
    assert isinstance(gateway.parse_error(html), MalformedResponse)


def test_what_to_fix_is_said_for_each_fatal_code() -> None:
    gateway = AliyunGateway(Credentials("k", "s"))
    for code, says in [("SignatureDoesNotMatch", "IMAGESEARCH_APP_SECRET"), ("InvalidAccessKeyId.Inactive",
                       "IMAGESEARCH_APP_KEY"), ("InvalidTimeStamp.Format", "clock"), ("Forbidden.NoRAM", "RAM")]:
        assert says in gateway.fix_hint(GatewayError(code))
    assert "refused the credentials" in gateway.fatal_message(GatewayError("SignatureDoesNotMatch"), "SearchByPic")


def test_an_exact_code_beats_a_code_glob_which_beats_any_code() -> None:
    actions = ErrorActions({"Throttling*": THROTTLE, "Throttling.Quota": STOP, "*": SEED_ERROR, "7": RETRY})
    assert actions.action_for(GatewayError("Throttling.Quota")) == STOP
    assert actions.action_for(GatewayError("Throttling.User")) == THROTTLE
    assert actions.action_for(GatewayError("Throttlingx")) == THROTTLE
    assert actions.action_for(GatewayError("Other")) == SEED_ERROR
    assert actions.action_for(GatewayError("7")) == RETRY
