"""The gateway middleware on its own: call stats, error actions, the daily quota, the quota pacer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from scrapy import Spider
from scrapy.http import JsonResponse, Request, Response
from scrapy.utils.test import get_crawler

from pipeline import settings as project_settings
from pipeline.components.journal import REPLAYED_FLAG
from pipeline.components.middlewares import CALL_TICKET_META_KEY, THROTTLED_META_KEY, CallTicket, GatewayMiddleware
from pipeline.errors import STOP_MESSAGE_STAT, GatewayStopped, ImageRejected
from pipeline.gateways.onebound.gateway import OneboundGateway
from pipeline.gateways.top.gateway import TopGateway
from pipeline.pacing.apps import Credentials

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
    gateway = TopGateway(Credentials("key1", SECRET), "md5")
    return gateway.to_request(gateway.build_search("aW1n", 1, None), ENDPOINT, meta=meta)


def _answer(request: Request, payload: Any) -> Response:
    return JsonResponse(ENDPOINT, body=json.dumps(payload).encode(), request=request)


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


async def _first_then_held_back(
    middleware: GatewayMiddleware, requests: list[Request], sent: list[int]
) -> list[asyncio.Future[None]]:
    """Send ``requests[0]``, then start the others, which wait for its answer; ``sent`` gets each one's
    index as it goes. The others, still waiting."""

    async def send(index: int) -> None:
        await middleware.process_request(requests[index])
        sent.append(index)

    await send(0)
    waiting = [asyncio.ensure_future(send(index)) for index in range(1, len(requests))]
    await asyncio.sleep(0.05)
    assert sent == [0]  # the others wait for the first answer
    return waiting


def test_until_the_gateway_answers_once_only_one_call_goes_out(crawler: Any) -> None:
    """A wrong secret or endpoint costs one call, not a whole wave of CONCURRENT_REQUESTS."""
    middleware = GatewayMiddleware.from_crawler(crawler)
    first, others = _search_request(), [_search_request() for _ in range(3)]

    async def crawl() -> list[int]:
        sent: list[int] = []
        waiting = await _first_then_held_back(middleware, [first, *others], sent)
        middleware.process_response(first, _answer(first, _error(15, "isv.invalid-signature")))
        await asyncio.gather(*waiting, return_exceptions=True)
        return sent

    sent = asyncio.run(crawl())
    # The answer was fatal: the calls held back are refused, none is sent.
    assert sent == [0]
    assert crawler.stats.get_value("imagesearch/calls") == 1


def test_a_first_call_whose_picture_cannot_be_read_as_it_leaves_gives_its_place_to_the_next(crawler: Any) -> None:
    """The first call's picture changed before it left (ImageRejected, no call sent): the calls held
    back must not wait for an answer that will never come."""
    middleware = GatewayMiddleware.from_crawler(crawler)
    first, second, third = _search_request(), _search_request(), _search_request()

    async def crawl() -> list[int]:
        sent: list[int] = []
        waiting = await _first_then_held_back(middleware, [first, second, third], sent)
        middleware.process_exception(first, ImageRejected("image_changed", "the file changed"))
        await asyncio.sleep(0.3)
        assert len(sent) == 2  # one of the others went in its place; the last still waits for an answer
        probe = second if sent[1] == 1 else third
        middleware.process_response(probe, _answer(probe, SUCCESS))
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
        return sent

    assert sorted(asyncio.run(crawl())) == [0, 1, 2]
    assert crawler.stats.get_value("imagesearch/calls") == 2  # the one never sent is not a call


def test_a_service_call_refused_before_the_first_answer_gives_its_place_and_none_waits_past_its_time() -> None:
    """The search service's first call finds no quota slot within IMAGESEARCH_SERVE_MAX_WAIT (another
    crawl on the key booked them): refused, never sent. The next caller's call goes in its place; and a
    caller held back behind a first call still out is let go at its deadline, not after the answer."""
    crawler = get_crawler(Spider, _project_settings(IMAGESEARCH_APP_SECRET=SECRET, IMAGESEARCH_APP_KEY="key1",
                                                    IMAGESEARCH_QUOTA="1/60"))
    crawler.spider = Spider("test")
    crawler.stats.open_spider()
    middleware = GatewayMiddleware.from_crawler(crawler)
    pacer = middleware.pacer
    pacer.store.reserve(pacer.slots, pacer.clock(), pacer.margin)  # the minute's one call, booked elsewhere

    def service_call(**ticket: Any) -> tuple[Request, CallTicket]:
        call_ticket = CallTicket(**ticket)
        return _search_request(**{CALL_TICKET_META_KEY: call_ticket}), call_ticket

    async def serve() -> None:
        for _ in range(2):  # the second is not held back behind the first, which never went
            request, ticket = service_call(max_wait=0.0)
            with pytest.raises(GatewayStopped):
                await asyncio.wait_for(middleware.process_request(request), timeout=5)
            assert ticket.refusal == "quota_wait" and ticket.calls == 0 and ticket.wait > 50
        # A first call that does go (no quota in its way), and a caller behind it with 0.3 s left.
        pacer.slots = [(key, None) for key, _ in pacer.slots]
        first, _ = service_call()
        await middleware.process_request(first)
        request, ticket = service_call(deadline=pacer.clock() + 0.3)
        with pytest.raises(GatewayStopped):
            await asyncio.wait_for(middleware.process_request(request), timeout=5)
        assert ticket.refusal == "timeout" and ticket.calls == 0

    asyncio.run(serve())
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
    remaining = middleware.pacer.store.banned_until(middleware.pacer.slots[0][0], 0.0) - time.monotonic()
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
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    middleware.process_response(request, _answer(request, _error(15, "isv.invalid-signature")))
    with pytest.raises(GatewayStopped):
        asyncio.run(middleware.process_request(_search_request()))


def test_the_days_quota_spent_stops_sending_and_says_when_to_run_again(crawler: Any) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    answer = _answer(request, _error(7, "accesscontrol.limited-by-app-access-count", "the day's calls are used"))
    with pytest.raises(GatewayStopped):  # not the seed's fault: its seed stays unsearched, for the resume
        middleware.process_response(request, answer)
    with pytest.raises(GatewayStopped):
        asyncio.run(middleware.process_request(_search_request()))
    message = crawler.stats.get_value(STOP_MESSAGE_STAT)
    assert "this app's call quota for the day" in message and "00:00 China time" in message
    assert "run the same command again" in message and "\n" not in message


def _onebound_crawler(**settings: Any) -> Any:
    crawler = get_crawler(Spider, _project_settings(IMAGESEARCH_GATEWAY="onebound", **settings))
    crawler.spider = Spider("test")
    crawler.spider.crawler = crawler
    crawler.stats.open_spider()
    return crawler


def _onebound(request: Request, api_info: str, code: str = "0000") -> Response:
    payload = {"items": {"item": [], "total_results": 0}, "error_code": code, "reason": "", "api_info": api_info}
    return JsonResponse(request.url, body=json.dumps(payload).encode(), request=request)


def _onebound_search(gateway: OneboundGateway, page: int = 1) -> Request:
    return gateway.to_request(gateway.build_search("https://img.alicdn.com/a.jpg", page, None), "http://127.0.0.1:1")


def test_an_answer_saying_the_day_is_used_up_stops_before_the_next_call() -> None:
    crawler = _onebound_crawler()
    middleware = GatewayMiddleware.from_crawler(crawler)
    gateway = OneboundGateway(Credentials("k", "s"))
    request = _onebound_search(gateway)
    ok = _onebound(request, "today:9 max:10")
    assert middleware.process_response(request, ok) is ok and not middleware.stopped
    assert crawler.stats.get_value("imagesearch/daily_quota") == "9/10"
    last = _onebound(request, "today:10 max:10")
    assert middleware.process_response(request, last) is last  # a good answer: the spider gets it
    assert not middleware.stopped, "it may have been the crawl's last call"
    with pytest.raises(GatewayStopped):
        asyncio.run(middleware.process_request(_onebound_search(gateway, 2)))
    assert middleware.stopped and "10 of 10 calls today" in crawler.stats.get_value(STOP_MESSAGE_STAT)


def test_a_replayed_answer_does_not_count_for_today() -> None:
    middleware = GatewayMiddleware.from_crawler(_onebound_crawler())
    request = _onebound_search(OneboundGateway(Credentials("k", "s")))
    old = _onebound(request, "today:10 max:10")
    old.flags.append(REPLAYED_FLAG)  # yesterday's answer, from the JOBDIR journal
    assert middleware.process_response(request, old) is old and not middleware.stopped


def test_calls_held_back_are_not_sent_once_an_answer_says_the_day_is_used_up() -> None:
    crawler = _onebound_crawler()
    middleware = GatewayMiddleware.from_crawler(crawler)
    gateway = OneboundGateway(Credentials("k", "s"))
    first, others = _onebound_search(gateway, 1), [_onebound_search(gateway, page) for page in (2, 3, 4)]

    async def crawl() -> list[str]:
        sent: list[str] = []

        async def send(request: Request, name: str) -> None:
            await middleware.process_request(request)
            sent.append(name)

        await send(first, "first")
        waiting = [asyncio.ensure_future(send(r, f"other{i}")) for i, r in enumerate(others)]
        await asyncio.sleep(0.1)
        middleware.process_response(first, _onebound(first, "today:10 max:10"))  # a good answer, the day's last
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(result, GatewayStopped) for result in results)
        return sent

    assert asyncio.run(crawl()) == ["first"]
    assert crawler.stats.get_value("imagesearch/calls") == 1
    assert "10 of 10 calls today" in crawler.stats.get_value(STOP_MESSAGE_STAT)


def test_a_seed_error_on_the_days_last_call_still_reaches_the_spider() -> None:
    middleware = GatewayMiddleware.from_crawler(_onebound_crawler())
    request = _onebound_search(OneboundGateway(Credentials("k", "s")))
    answer = _onebound(request, "today:10 max:10", code="5000")
    assert middleware.process_response(request, answer) is answer  # recorded on its seed, not asked again
    assert middleware.day_used_up and not middleware.stopped


def test_a_long_outage_is_warned_of_once_a_minute_while_it_lasts(
    crawler: Any, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = GatewayMiddleware.from_crawler(crawler)
    now = [1000.0]
    middleware.pacer.clock = lambda: now[0]
    request = _search_request()
    middleware.process_response(request, _answer(request, SUCCESS))  # the gateway answered at t=1000
    assert crawler.stats.get_value("imagesearch/answers") == 1

    def attempts(seconds: float, every: float) -> None:
        for _ in range(int(seconds / every)):
            now[0] += every
            failed = _search_request()
            middleware.process_exception(failed, ConnectionRefusedError("Connection was refused"))
            middleware.process_response(failed, Response(ENDPOINT, status=503, request=failed))

    with caplog.at_level("WARNING", logger="pipeline.components.middlewares"):
        attempts(59, every=1)
        assert not caplog.records  # under a minute: retries as usual, nothing said
        attempts(130, every=1)  # said at t = 1060, 1120 and 1180, on the first failure of each
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 3, warnings
        assert warnings[0].startswith(
            "The gateway has not answered for 60 s (119 attempts failed, the last: ConnectionRefusedError: ")
        assert "still retrying" in warnings[0]
        caplog.clear()
        request = _search_request()
        now[0] += 1
        middleware.process_response(request, _answer(request, SUCCESS))
        assert [r.getMessage() for r in caplog.records] == ["The gateway answers again, after 190 s without an answer"]
    assert crawler.stats.get_value("imagesearch/answers") == 2


def test_an_answer_that_is_not_the_gateways_is_no_answer(crawler: Any) -> None:
    """An HTML page or a 404 from a wrong endpoint does not count as the gateway having answered."""
    middleware = GatewayMiddleware.from_crawler(crawler)
    request = _search_request()
    html = Response(ENDPOINT, body=b"<html>It works!</html>", request=request)
    middleware.process_response(request, html)
    middleware.process_response(request, Response(ENDPOINT, status=404, request=request))
    assert not crawler.stats.get_value("imagesearch/answers")
    middleware.process_response(request, _answer(request, _error(15, "isv.invalid-parameter")))
    assert crawler.stats.get_value("imagesearch/answers") == 1  # an error answer is an answer
