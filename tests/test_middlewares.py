"""Gateway middlewares on their own: signing at send time, call stats, error actions, the quota pacer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from scrapy import Spider
from scrapy.http import JsonResponse, Request, Response
from scrapy.utils.test import get_crawler

from pipeline import settings as project_settings
from pipeline.gateways.top import TopGateway
from pipeline.middlewares import THROTTLED_META_KEY, GatewayMiddleware, TopSigningMiddleware
from pipeline.signing import CHINA_TZ, TIMESTAMP_FORMAT, verify

ENDPOINT = "http://127.0.0.1:1/router/rest"
SECRET = "very-secret-value"


def _project_settings(**overrides: Any) -> dict[str, Any]:
    values = {k: v for k, v in vars(project_settings).items() if k.isupper()}
    values.pop("ADDONS", None)
    return {**values, **overrides}


@pytest.fixture
def crawler() -> Any:
    crawler = get_crawler(Spider, _project_settings(IMAGESEARCH_APP_SECRET=SECRET, IMAGESEARCH_APP_KEY="key1"))
    crawler.spider = Spider("test")
    crawler.spider.crawler = crawler
    crawler.stats.open_spider()
    return crawler


def _search_request(**meta: Any) -> Request:
    gateway = TopGateway("md5")
    return gateway.to_request(gateway.build_search("aW1n", 1, None), ENDPOINT, meta=meta)


def _form(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode()))


def _answer(request: Request, payload: Any) -> Response:
    return JsonResponse(ENDPOINT, body=json.dumps(payload).encode(), request=request)


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_signing_adds_common_params_and_a_valid_sign(crawler: Any, sign_method: str) -> None:
    crawler.settings.frozen = False
    crawler.settings.set("IMAGESEARCH_SIGN_METHOD", sign_method)
    middleware = TopSigningMiddleware.from_crawler(crawler)
    request = _search_request()
    assert middleware.process_request(request) is None
    form = _form(request)
    assert form["app_key"] == "key1" and form["sign_method"] == sign_method and form["v"] == "2.0"
    assert form["format"] == "json" and form["image_data"] == "aW1n" and form["method"] == "taobao.image.search"
    assert verify(form, SECRET)
    assert SECRET not in repr(middleware) and SECRET not in repr(request) and SECRET not in str(request.meta)


def test_retried_copy_gets_a_fresh_timestamp_and_sign(crawler: Any) -> None:
    middleware = TopSigningMiddleware.from_crawler(crawler)
    request = _search_request()
    middleware.process_request(request)
    stale = request.replace(body=urlencode({**_form(request), "timestamp": "2001-01-01 00:00:00", "sign": "BAD"}))
    middleware.process_request(stale)
    pairs = parse_qsl(stale.body.decode())
    form = dict(pairs)
    assert form["timestamp"] != "2001-01-01 00:00:00" and form["sign"] != "BAD"
    assert [key for key, _ in pairs].count("sign") == 1 and [key for key, _ in pairs].count("timestamp") == 1
    assert verify(form, SECRET)


def test_timestamp_is_gmt8_whatever_the_machine_zone(crawler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        request = _search_request()
        TopSigningMiddleware.from_crawler(crawler).process_request(request)
        from datetime import datetime

        sent = datetime.strptime(_form(request)["timestamp"], TIMESTAMP_FORMAT).replace(tzinfo=CHINA_TZ)
        assert abs((datetime.now(CHINA_TZ) - sent).total_seconds()) < 5
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_other_requests_are_left_alone(crawler: Any) -> None:
    request = Request("http://example.com/", method="POST", body=b"a=1")
    TopSigningMiddleware.from_crawler(crawler).process_request(request)
    assert request.body == b"a=1"


def test_calls_are_counted_per_attempt_and_method(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    for _ in range(2):
        request = _search_request()
        asyncio.run(middleware.process_request(request))
        middleware.process_response(request, _answer(request, SUCCESS))
    asyncio.run(middleware.process_request(Request("http://example.com/")))
    assert crawler.stats.get_value("imagesearch/calls") == 2
    assert crawler.stats.get_value("imagesearch/calls/taobao.image.search") == 2


SUCCESS: dict[str, Any] = {"image_search_response": {"items": {"item": []}, "total_results": "0"}}


def test_until_the_gateway_answers_once_only_one_call_goes_out(crawler: Any) -> None:
    """A wrong secret or endpoint costs one call, not a whole wave of CONCURRENT_REQUESTS."""
    middleware = GatewayMiddleware.from_crawler(crawler)
    first, others = _search_request(), [_search_request() for _ in range(3)]

    async def crawl() -> list[str]:
        sent: list[str] = []

        async def send(request: Request, name: str) -> None:
            await middleware.process_request(request)
            sent.append(name)

        await send(first, "first")
        waiting = [asyncio.ensure_future(send(r, f"other{i}")) for i, r in enumerate(others)]
        await asyncio.sleep(0.05)
        assert sent == ["first"]  # the others wait for the first answer
        middleware.process_response(first, _answer(first, _error(15, "isv.invalid-signature")))
        await asyncio.gather(*waiting, return_exceptions=True)
        return sent

    sent = asyncio.run(crawl())
    # The answer was fatal: the calls held back are refused, none is sent.
    assert sent == ["first"]
    assert crawler.stats.get_value("imagesearch/calls") == 1


def _error(code: int, sub_code: str, sub_msg: str = "") -> dict[str, Any]:
    return {"error_response": {"code": code, "msg": "m", "sub_code": sub_code, "sub_msg": sub_msg, "request_id": "r"}}


def test_transient_error_is_retried_until_the_budget_is_spent(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    retries = crawler.settings.getint("RETRY_TIMES")
    for attempt in range(1, retries + 1):
        again = middleware.process_response(request, _answer(request, _error(10, "isp.service-unavailable")))
        assert isinstance(again, Request) and again.meta["retry_times"] == attempt
        request = again
    response = _answer(request, _error(10, "isp.service-unavailable"))
    assert middleware.process_response(request, response) is response
    assert crawler.stats.get_value("imagesearch/errors/10") == retries + 1
    assert crawler.stats.get_value("retry/reason_count/gateway_error_10") == retries


def test_broken_body_is_retried(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    broken = JsonResponse(ENDPOINT, body=b'{"image_search_response": {"it', request=request)
    assert isinstance(middleware.process_response(request, broken), Request)


def test_quota_answer_bans_all_calls_for_the_seconds_given(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    answer = _answer(
        request, _error(16, "accesscontrol.limited-by-api-access-count", "This ban will last for 2 more seconds")
    )
    again = middleware.process_response(request, answer)
    assert isinstance(again, Request) and again.meta[THROTTLED_META_KEY] == 1
    remaining = middleware.pacer.store.banned_until(middleware.pacer.key) - time.monotonic()
    assert 1.5 < remaining <= 2.0
    assert crawler.stats.get_value("imagesearch/throttled") == 1
    assert crawler.stats.get_value("pacing/quota_errors") == 1


def test_fatal_and_seed_errors_and_successes_go_to_the_spider(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    for payload in (_error(15, "isv.invalid-signature"), _error(21, "isv.invalid-image-format"),
                    {"image_search_response": {"items": {"item": []}, "total_results": "0"}}):
        response = _answer(request, payload)
        assert middleware.process_response(request, response) is response


def test_backoff_doubles_and_is_capped(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    middleware.backoff, middleware.backoff_max = 0.5, 1.5
    assert [middleware.backoff_delay(n) for n in range(4)] == [0.0, 0.5, 1.0, 1.5]


def test_nothing_is_sent_after_a_fatal_answer(crawler: Any) -> None:
    from pipeline.errors import GatewayStopped

    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    middleware.process_response(request, _answer(request, _error(15, "isv.invalid-signature")))
    with pytest.raises(GatewayStopped):
        asyncio.run(middleware.process_request(_search_request()))
