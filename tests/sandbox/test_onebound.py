"""Onebound's item_search_img and upload_img over real HTTP: credentials, envelope, api_info, daily and rate limits."""

from __future__ import annotations

import base64
import time

import pytest

from pipeline.gateways.onebound.wire import ApiInfo, code_text
from sandbox.catalog import builtin_catalog, jpeg_bytes
from sandbox.testing import SandboxProcess, onebound_search, onebound_upload, post, signed_params

KEY, SECRET = "ob-key-1", "ob-secret-1"


@pytest.fixture(scope="module")
def sb():
    with SandboxProcess("--app", f"{KEY}:{SECRET}", "--app", "deny:deny", "--deny", "deny:item_search_img") as process:
        yield process


@pytest.fixture(scope="module")
def photo_b64() -> str:
    return base64.b64encode(jpeg_bytes(builtin_catalog().products[42].image())).decode()


def test_upload_then_search_finds_the_product(sb, photo_b64):
    upload = onebound_upload(sb.url, photo_b64, KEY, SECRET)
    assert code_text(upload["error_code"]) == "0000"
    url = upload["items"]["item"]["url"]
    assert url.startswith("//g-search3.alicdn.com/img/bao/uploaded/i4/") and url.endswith(".jpg")
    answer = onebound_search(sb.url, "https:" + url, KEY, SECRET)
    assert code_text(answer["error_code"]) == "0000" and answer["reason"] == "ok"
    items = answer["items"]
    assert int(items["page"]) == 1 and items["page_size"] == 20 and items["pagecount"] == 10
    assert int(items["total_results"]) == int(items["real_total_results"]) == 200
    first = items["item"][0]
    assert str(first["num_iid"]) == str(builtin_catalog().products[42].fields["num_iid"])
    assert isinstance(first["num_iid"], int)  # a number here, where TOP sends a string
    assert set(first) >= {"title", "price", "promotion_price", "orginal_price", "sales", "pic_url", "detail_url",
                          "seller_nick", "seller_id", "area", "post_fee"}
    assert "is_tmall" not in first
    assert ApiInfo.parse(answer["api_info"]) is not None and answer["server_time"].startswith("Beijing/")


def test_the_same_listings_as_top(sb, photo_b64):
    upload = onebound_upload(sb.url, photo_b64, KEY, SECRET)
    onebound = onebound_search(sb.url, "https:" + upload["items"]["item"]["url"], KEY, SECRET, page="2")["items"]
    top = post(sb.endpoint, signed_params("taobao.image.search", image_data=photo_b64, page="2", app_key=KEY,
                                          secret=SECRET))["image_search_response"]
    assert [str(i["num_iid"]) for i in onebound["item"]] == [str(i["num_iid"]) for i in top["items"]["item"]]
    assert [i["price"] for i in onebound["item"]] == [i["price"] for i in top["items"]["item"]]


@pytest.mark.parametrize(("key", "secret"), [(KEY, "wrong"), ("nobody", SECRET), ("", "")])
def test_a_wrong_key_or_secret_is_4013(sb, key, secret):
    answer = onebound_search(sb.url, "https://img.alicdn.com/x.jpg", key, secret)
    assert code_text(answer["error_code"]) == "4013" and answer["reason"] and "items" not in answer


def test_a_key_without_access_is_4005(sb):
    answer = onebound_search(sb.url, "https://img.alicdn.com/x.jpg", "deny", "deny")
    assert code_text(answer["error_code"]) == "4005"


def test_imgid_must_be_a_platform_picture(sb, photo_b64):
    assert code_text(onebound_search(sb.url, photo_b64[:100], KEY, SECRET)["error_code"]) == "5000"  # Base64: no URL
    assert code_text(onebound_search(sb.url, "https://example.com/a.jpg", KEY, SECRET)["error_code"]) == "5000"
    assert code_text(onebound_search(sb.url, "", KEY, SECRET)["error_code"]) == "2000"


def test_api_info_counts_the_days_calls_and_the_limit_stops_them(make_sandbox, photo_b64):
    sb = make_sandbox("--app", f"{KEY}:{SECRET}", "--daily-max", "3", "--day-seconds", "3")
    url = "https:" + onebound_upload(sb.url, photo_b64, KEY, SECRET)["items"]["item"]["url"]
    infos = [ApiInfo.parse(onebound_search(sb.url, url, KEY, SECRET, page=str(p))["api_info"]) for p in (1, 2)]
    assert [(i.today, i.max) for i in infos if i] in ([(2, 3), (3, 3)], [(1, 3), (2, 3)])  # a day may turn meanwhile
    deadline = time.monotonic() + 10
    while True:
        answer = onebound_search(sb.url, url, KEY, SECRET)
        if code_text(answer["error_code"]) == "4029":
            break
        assert time.monotonic() < deadline, answer
    info = ApiInfo.parse(answer["api_info"])
    assert info is not None and info.today == info.max == 3
    assert sb.stats()["daily_refused"] >= 1
    time.sleep(3.1)  # the next (short) day
    assert code_text(onebound_search(sb.url, url, KEY, SECRET)["error_code"]) == "0000"


def test_next_day_starts_the_days_count_again_and_keeps_the_stats(make_sandbox, photo_b64):
    sb = make_sandbox("--app", f"{KEY}:{SECRET}", "--daily-max", "2")
    url = "https:" + onebound_upload(sb.url, photo_b64, KEY, SECRET)["items"]["item"]["url"]
    assert code_text(onebound_search(sb.url, url, KEY, SECRET)["error_code"]) == "0000"  # the upload was the first
    assert code_text(onebound_search(sb.url, url, KEY, SECRET)["error_code"]) == "4029"
    before = sb.stats()
    sb.next_day()
    answer = onebound_search(sb.url, url, KEY, SECRET)
    assert code_text(answer["error_code"]) == "0000"
    info = ApiInfo.parse(answer["api_info"])
    assert info is not None and (info.today, info.max) == (1, 2)
    after = sb.stats()
    assert after["calls"]["total"] == before["calls"]["total"] + 1 and after["daily_refused"] == 1


def test_too_many_calls_in_the_window_say_how_long_to_wait(make_sandbox, photo_b64):
    sb = make_sandbox("--app", f"{KEY}:{SECRET}:2/30")
    url = "https:" + onebound_upload(sb.url, photo_b64, KEY, SECRET)["items"]["item"]["url"]
    onebound_search(sb.url, url, KEY, SECRET)
    answer = onebound_search(sb.url, url, KEY, SECRET)
    assert code_text(answer["error_code"]) == "4000" and "retry after" in answer["reason"]


def test_cache_yes_marks_a_repeated_answer_and_cache_no_never(sb, photo_b64):
    url = "https:" + onebound_upload(sb.url, photo_b64, KEY, SECRET)["items"]["item"]["url"]
    onebound_search(sb.url, url, KEY, SECRET, cache="yes", page="3")
    assert onebound_search(sb.url, url, KEY, SECRET, cache="yes", page="3")["cache"] == 1
    assert onebound_search(sb.url, url, KEY, SECRET, cache="no", page="3")["cache"] == 0


def test_stats_count_onebound_calls_by_api_and_key(make_sandbox, photo_b64):
    sb = make_sandbox("--app", f"{KEY}:{SECRET}")
    url = "https:" + onebound_upload(sb.url, photo_b64, KEY, SECRET)["items"]["item"]["url"]
    onebound_search(sb.url, url, KEY, SECRET)
    onebound_search(sb.url, url, KEY, "wrong")
    calls = sb.stats()["calls"]
    assert calls["by_protocol"] == {"onebound": 3}
    assert calls["by_method"] == {"upload_img": 1, "item_search_img": 2} and calls["by_app"] == {KEY: 3}
    assert sb.stats()["errors"] == {"4013": 1}


def test_remote_fault_is_a_busy_answer(make_sandbox):
    sb = make_sandbox("--app", f"{KEY}:{SECRET}", "--fault-remote", "1")
    answer = onebound_search(sb.url, "https://img.alicdn.com/x.jpg", KEY, SECRET)
    assert code_text(answer["error_code"]) == "5003"
