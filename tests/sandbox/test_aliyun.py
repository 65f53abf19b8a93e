"""Alibaba Cloud Image Search (Taobao-Union edition) at ``/`` over real HTTP: Alibaba's own SDK client
unchanged, signatures, time, nonces, the QPS limit, pictures and fields, and the same listings as TOP."""

from __future__ import annotations

import base64
import io
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from alibabacloud_imagesearch20210501 import models
from alibabacloud_imagesearch20210501.client import Client
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_util.models import RuntimeOptions
from PIL import Image

from pipeline.gateways.aliyun.signing import nonce as new_nonce
from pipeline.gateways.aliyun.signing import timestamp
from sandbox.catalog import builtin_catalog, jpeg_bytes
from sandbox.cluttered import cluttered_photo
from sandbox.testing import SandboxProcess, aliyun_post, post, signed_params

KEY, SECRET = "LTAI5tSandboxKey", "aliyun-secret-1"
PRODUCT = 42


@pytest.fixture(scope="module")
def sb():
    with SandboxProcess("--app", f"{KEY}:{SECRET}", "--aliyun-qps", "1000") as process:
        yield process


@pytest.fixture(scope="module")
def photo_b64() -> str:
    return base64.b64encode(jpeg_bytes(builtin_catalog().products[PRODUCT].image())).decode()


def _client(sb: SandboxProcess, secret: str = SECRET, algorithm: str | None = None) -> Client:
    config = Config(access_key_id=KEY, access_key_secret=secret, endpoint=sb.url.removeprefix("http://"),
                    protocol="http", region_id="cn-shanghai")
    if algorithm:
        config.signature_algorithm = algorithm
    return Client(config)


def _no_retries() -> RuntimeOptions:
    return RuntimeOptions(autoretry=False, max_attempts=0)


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3-default", "v2-rpc"])
def test_alibabas_own_sdk_client_searches_the_sandbox_unchanged(sb, photo_b64, algorithm):
    request = models.SearchByPicRequest(pic_content=photo_b64, num=5, start=0,
                                        fields="ItemId,Title,Volume,UserType,Nick,PriceAfterCoupon")
    response = _client(sb, algorithm=algorithm).search_by_pic_with_options(request, _no_retries())
    body = response.body
    assert response.status_code == 200 and body.success is True and body.code == 0 and body.request_id
    auctions = body.data.auctions
    assert len(auctions) == 5
    assert auctions[0].result.item_id == builtin_catalog().products[PRODUCT].num_iid  # its own photo comes first
    scores = [a.rank_score for a in auctions]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1.0
    first = auctions[0].result
    assert isinstance(first.volume, int) and first.user_type in (0, 1) and first.title and first.nick
    assert body.pic_info.main_region.region.startswith("0,")


def test_search_by_url_takes_a_picture_the_sandbox_serves(sb):
    product = builtin_catalog().products[PRODUCT]
    request = models.SearchByUrlRequest(pic_url=f"{sb.url}/img/{product.num_iid}.jpg", num=3, fields="ItemId")
    response = _client(sb).search_by_url_with_options(request, _no_retries())
    assert response.body.data.auctions[0].result.item_id == product.num_iid


def test_a_wrong_secret_is_signature_does_not_match_to_the_sdk(sb, photo_b64):
    with pytest.raises(Exception) as raised:
        _client(sb, secret="not-the-secret").search_by_pic_with_options(
            models.SearchByPicRequest(pic_content=photo_b64), _no_retries())
    assert getattr(raised.value, "code", None) == "SignatureDoesNotMatch"
    assert getattr(raised.value, "status_code", None) == 400


def test_the_same_listings_as_top_with_start_and_num_for_pages(sb, photo_b64):
    top = post(sb.endpoint, signed_params("taobao.image.search", image_data=photo_b64, page="2", app_key=KEY,
                                          secret=SECRET))["image_search_response"]["items"]["item"]
    status, _, answer = aliyun_post(sb.url, "SearchByPic", {"PicContent": photo_b64, "Start": "20", "Num": "20",
                                                            "Fields": "ItemId,Volume"}, KEY, SECRET)
    assert status == 200
    results = [a["Result"] for a in answer["Data"]["Auctions"]]
    assert [r["ItemId"] for r in results] == [str(i["num_iid"]) for i in top]
    assert [r["ZkFinalPrice"] for r in results] == [i["price"] for i in top]


def test_only_the_default_fields_come_unless_asked_for(sb, photo_b64):
    _, _, plain = aliyun_post(sb.url, "SearchByPic", {"PicContent": photo_b64, "Num": "1"}, KEY, SECRET)
    assert set(plain["Data"]["Auctions"][0]["Result"]) == {"PicUrl", "ReservePrice", "Title", "Url", "ZkFinalPrice"}
    _, _, asked = aliyun_post(sb.url, "SearchByPic", {"PicContent": photo_b64, "Num": "1",
                                                      "Fields": "ItemId,CouponAmount,NoSuchField"}, KEY, SECRET)
    assert set(asked["Data"]["Auctions"][0]["Result"]) == {
        "PicUrl", "ReservePrice", "Title", "Url", "ZkFinalPrice", "ItemId", "CouponAmount"}


def test_user_type_keeps_one_kind_of_seller(sb, photo_b64):
    for user_type in ("0", "1"):
        _, _, answer = aliyun_post(sb.url, "SearchByPic", {"PicContent": photo_b64, "Num": "20", "UserType": user_type,
                                                           "Fields": "UserType"}, KEY, SECRET)
        assert {a["Result"]["UserType"] for a in answer["Data"]["Auctions"]} == {int(user_type)}


def test_a_replayed_nonce_is_refused(sb, photo_b64):
    params = {"PicContent": photo_b64, "Num": "1"}
    once = new_nonce()
    assert aliyun_post(sb.url, "SearchByPic", params, KEY, SECRET, nonce=once)[0] == 200
    status, _, answer = aliyun_post(sb.url, "SearchByPic", params, KEY, SECRET, nonce=once)
    assert (status, answer["Code"]) == (400, "SignatureNonceUsed")
    assert set(answer) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


@pytest.mark.parametrize("minutes, ok", [(14, True), (16, False), (-16, False)])
def test_a_request_more_than_15_minutes_off_is_expired(sb, photo_b64, minutes, ok):
    date = timestamp(datetime.now(UTC) - timedelta(minutes=minutes))
    status, _, answer = aliyun_post(sb.url, "SearchByPic", {"PicContent": photo_b64, "Num": "1"}, KEY, SECRET,
                                    date=date)
    assert (status == 200) is ok
    if not ok:
        assert answer["Code"] == "InvalidTimeStamp.Expired"


@pytest.mark.parametrize("key, secret, status, code", [
    ("LTAI5tNobody", SECRET, 404, "InvalidAccessKeyId.NotFound"),
    (KEY, "wrong", 400, "SignatureDoesNotMatch"),
])
def test_credentials_are_checked(sb, photo_b64, key, secret, status, code):
    got, _, answer = aliyun_post(sb.url, "SearchByPic", {"PicContent": photo_b64}, key, secret)
    assert (got, answer["Code"]) == (status, code)


def _jpeg_b64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("params, code", [
    ({"PicContent": base64.b64encode(b"this is not a picture").decode()}, "InvalidPicFormat"),
    ({"PicContent": _jpeg_b64(60, 300)}, "UnsupportedPicPixels"),
    ({"PicContent": _jpeg_b64(300, 300), "Start": "500"}, "InvalidParameter"),
    ({"PicContent": _jpeg_b64(300, 300), "Num": "21"}, "InvalidParameter"),
    ({"PicContent": _jpeg_b64(300, 300), "Pid": "12345"}, "InvalidParameter.Pid"),
    ({}, "MissingParameter"),
])
def test_a_picture_or_parameter_it_cannot_take_is_a_400_with_its_code(sb, params, code):
    status, _, answer = aliyun_post(sb.url, "SearchByPic", params, KEY, SECRET)
    assert (status, answer["Code"]) == (400, code)


def test_an_action_or_version_it_does_not_know(sb):
    status, _, answer = aliyun_post(sb.url, "GetProductInfoByIds", {"ItemIds": "1"}, KEY, SECRET)
    assert (status, answer["Code"]) == (404, "InvalidAction.NotFound")


def test_the_qps_limit_throttles_with_how_long_to_wait_and_costs_no_quota(make_sandbox, photo_b64):
    sb = make_sandbox("--app", f"{KEY}:{SECRET}", "--aliyun-qps", "2")
    params = {"PicContent": photo_b64, "Num": "1"}
    answers = [aliyun_post(sb.url, "SearchByPic", params, KEY, SECRET) for _ in range(5)]
    throttled = [(headers, body) for status, headers, body in answers if status != 200]
    assert sum(status == 200 for status, _, _ in answers) >= 2 and throttled
    for headers, body in throttled:
        assert body["Code"] == "Throttling.User" and 0 < int(headers["x-acs-retry-after"]) <= 1000
    time.sleep(1.05)
    assert aliyun_post(sb.url, "SearchByPic", params, KEY, SECRET)[0] == 200  # a second later it goes
    stats = sb.stats()
    assert stats["quota_refused"] == len(throttled) and stats["errors"] == {"Throttling.User": len(throttled)}
    assert stats["calls"]["by_protocol"] == {"aliyun": 6} and stats["calls"]["by_app"] == {KEY: 6}


def test_a_region_is_the_box_searched_and_the_main_region_answered(sb):
    # A product pasted into a cluttered 1280 px frame (the service decodes it at a reduced scale, and still
    # answers in the picture's own pixels): its Region finds it first, the whole frame does not.
    product = builtin_catalog().products[PRODUCT]
    data, (left, top, right, bottom) = cluttered_photo(product, random.Random(9), side=1280, scale=(0.35, 0.4))
    picture = base64.b64encode(data).decode()
    region = f"{left},{right},{top},{bottom}"  # aliyun's order: x1,x2,y1,y2
    _, _, boxed = aliyun_post(sb.url, "SearchByPic", {"PicContent": picture, "Num": "20", "Region": region,
                                                      "Fields": "ItemId"},
                              KEY, SECRET)
    _, _, whole = aliyun_post(sb.url, "SearchByPic", {"PicContent": picture, "Num": "20", "Fields": "ItemId",
                                                      "Crop": "false"}, KEY, SECRET)
    assert boxed["Data"]["Auctions"][0]["Result"]["ItemId"] == str(product.num_iid)
    assert whole["Data"]["Auctions"][0]["Result"]["ItemId"] != str(product.num_iid)
    assert boxed["PicInfo"]["MainRegion"]["Region"] == region
    assert whole["PicInfo"]["MainRegion"]["Region"] == "0,1280,0,1280"
    # Crop=true (the default) without a Region: the service finds the product itself, and says where.
    _, _, cropped = aliyun_post(sb.url, "SearchByPic", {"PicContent": picture, "Num": "20", "Fields": "ItemId"},
                                KEY, SECRET)
    assert cropped["Data"]["Auctions"][0]["Result"]["ItemId"] == str(product.num_iid)
    x1, x2, y1, y2 = (int(v) for v in cropped["PicInfo"]["MainRegion"]["Region"].split(","))
    inter = max(0, min(x2, right) - max(x1, left)) * max(0, min(y2, bottom) - max(y1, top))
    union = (x2 - x1) * (y2 - y1) + (right - left) * (bottom - top) - inter
    assert inter / union > 0.4, ((x1, y1, x2, y2), (left, top, right, bottom))


def test_crop_true_keeps_a_clean_product_photo_whole(sb):
    # The product's own picture, alone: the service's detector finds nothing better than the whole frame.
    for product in builtin_catalog().products[:: 245]:
        buffer = io.BytesIO()
        product.image().convert("RGB").resize((640, 640)).save(buffer, "JPEG", quality=80)
        _, _, answer = aliyun_post(sb.url, "SearchByPic", {"PicContent": base64.b64encode(buffer.getvalue()).decode(),
                                                           "Fields": "ItemId"}, KEY, SECRET)
        assert answer["PicInfo"]["MainRegion"]["Region"] == "0,640,0,640", product.num_iid
        first = builtin_catalog().get(answer["Data"]["Auctions"][0]["Result"]["ItemId"])
        # The product, or a reseller's listing of it (the same picture resized: as alike).
        assert first is not None and (first.num_iid == product.num_iid
                                      or (first.offer is not None and first.offer == product.offer))
