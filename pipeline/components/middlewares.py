"""The downloader middleware of gateway calls: pacing, retry backoff, error actions, daily quota, call stats."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.utils.asyncio import sleep
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.job import job_dir

from pipeline.components.journal import REPLAYED_FLAG
from pipeline.errors import (
    QUOTA_SPENT_REASON,
    STOP_MESSAGE_STAT,
    GatewayStopped,
    ImageRejected,
    MalformedResponse,
    crawl_stopping,
)
from pipeline.gateways.actions import FATAL, RETRY, STOP, THROTTLE, ErrorActions
from pipeline.gateways.base import METHOD_META_KEY, load_gateway, quota_margin_setting, quota_setting
from pipeline.pacing.apps import APP_META_KEY, app_pool
from pipeline.pacing.quota import QuotaPacer, SlotTooLate, sleep_until
from pipeline.shared.client import SharedRunUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from pipeline.errors import GatewayError
    from pipeline.gateways.base import DailyQuota, Gateway

logger = logging.getLogger(__name__)

#: Request meta key counting how often a request was re-sent after a quota answer.
THROTTLED_META_KEY = "imagesearch_throttled"
#: Request meta key of a CallTicket (retries and re-sends carry the same one), for the search service.
CALL_TICKET_META_KEY = "imagesearch_call_ticket"


class CallTicket:
    """A call of the search service (``scrapy serve``) and what the middleware tells its caller: whether
    it holds a quota slot yet, how many attempts of it were sent (what one search cost), and, when the
    middleware gave it up, why (``refusal``). ``deadline`` (on the pacer's clock) is when its caller
    stops waiting: no attempt waits, backs off or is re-sent past it. ``max_wait``: the most seconds an
    attempt may wait for its quota slot; a later slot is not booked (refusal ``quota_wait``, ``wait``
    seconds to the next)."""

    def __init__(self, deadline: float | None = None, max_wait: float | None = None) -> None:
        self.booked = False
        self.calls = 0
        self.deadline = deadline
        self.max_wait = max_wait
        #: "timeout": its time ran out before an answer; "redis": the quota's Redis did not answer;
        #: "quota_wait": no quota slot within max_wait.
        self.refusal: str | None = None
        self.wait = 0.0

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline
#: How often the calls held back until the gateway's first answer look whether it came.
_FIRST_ANSWER_POLL_SECONDS = 0.05
#: Request meta flag of the first call (and its retries), which goes before the gateway has answered.
_PROBE_META_KEY = "imagesearch_probe"


class GatewayMiddleware:
    """For gateway calls (requests whose meta names an API method):

    - before sending: waits for its turn under the quota and any ban (pipeline.pacing.quota.QuotaPacer) and
      the backoff of a retried request
      (IMAGESEARCH_RETRY_BACKOFF x 2^(n-1), at most IMAGESEARCH_RETRY_BACKOFF_MAX), then counts
      the call (``imagesearch/calls``, ``imagesearch/calls/<method>``);
    - once the crawl is stopping (a fatal answer, the day's quota spent, Ctrl-C, SIGTERM): sends
      nothing more, and a call waiting for its turn gives up within a second (GatewayStopped);
    - on an error answer: counts ``imagesearch/errors/<code>`` and applies the gateway's error
      actions (with IMAGESEARCH_ERROR_ACTIONS over them): ``retry`` re-sends through Scrapy's retry
      machinery (RETRY_TIMES), ``throttle`` bans calls for the seconds the gateway names and
      re-sends (at most IMAGESEARCH_THROTTLE_MAX_TIMES); anything else, or a retry budget spent,
      goes on to the spider, which records it on the seed;
    - when the app's quota for the day is spent (a ``stop`` error, or an answer saying the day's
      calls are all used, as Onebound's ``api_info`` does, when another call is due): sends nothing
      more and closes the crawl (finish reason ``quota_spent``, exit 4) with one line saying when to
      run it again; with JOBDIR the same command then resumes it. The stat
      ``imagesearch/daily_quota`` keeps the last count an answer gave.

    HTTP errors, timeouts and dropped connections stay with Scrapy's RetryMiddleware (with our backoff),
    except the statuses whose body is the gateway's error answer (``Gateway.error_statuses``, aliyun's).
    """

    def __init__(self, crawler: Crawler, gateway: Gateway, actions: ErrorActions) -> None:
        self.crawler = crawler
        self.gateway = gateway
        self.actions = actions
        settings = crawler.settings
        self.pacer = QuotaPacer.from_crawler(crawler, app_pool(settings, quota_setting(settings)),
                                             float(quota_margin_setting(settings)))
        #: Set by the first fatal answer (the spider closes the crawl), the day's quota spent, or the
        #: crawl_stopping signal: no further call leaves.
        self.stopped = False
        settings = crawler.settings
        self.backoff = settings.getfloat("IMAGESEARCH_RETRY_BACKOFF")
        self.backoff_max = settings.getfloat("IMAGESEARCH_RETRY_BACKOFF_MAX")
        self.throttle_max_times = settings.getint("IMAGESEARCH_THROTTLE_MAX_TIMES")
        self.throttle_default_wait = settings.getfloat("IMAGESEARCH_THROTTLE_DEFAULT_WAIT")
        self.probe_retry_times = settings.getint("IMAGESEARCH_PROBE_RETRY_TIMES")
        #: Set when an answer said the day's calls are all used (what it said): the next call stops the crawl.
        self.day_used_up: str | None = None
        #: The code of the fatal answer that stopped the calls, if one did.
        self.fatal: str | None = None
        #: For a long-running spider (a ``serves`` attribute, the search service): when the day's quota is
        #: spent, calls are refused until this time (UTC) instead of the crawl being closed.
        self.resumes_at: datetime | None = None
        #: Pool indexes of the app keys this crawl saw spend their calls for the day (set aside until it turns).
        self.keys_spent: set[int] = set()
        # Until the gateway has answered once, one call goes out and the others wait for its answer:
        # a wrong secret, app key or endpoint then costs one call, not CONCURRENT_REQUESTS of them.
        #: The first call's token (in its meta and its retries'), while it is out.
        self._probe: object | None = None
        self._answered = False
        # An outage: since when nothing answered, how many attempts failed, when it was last said.
        self.outage_warning = settings.getfloat("IMAGESEARCH_OUTAGE_WARNING")
        self._last_answer = self.pacer.clock()
        self._failed_since = 0
        self._warned_at: float | None = None
        #: Calls in the downloader that hold no quota slot yet (held until the first answer, or backing off).
        self.unbooked = 0
        #: The longest time without an answer so far (stat imagesearch/longest_silence_seconds).
        self.longest_silence = 0.0
        # Seconds from sending to answer, summed over the answers, for the progress ETA.
        self._latency_sum = 0.0
        self._latency_count = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        gateway = load_gateway(crawler)
        middleware = cls(crawler, gateway, ErrorActions.from_settings(crawler.settings, gateway.error_actions))
        crawler.signals.connect(middleware.crawl_stopping, signal=crawl_stopping)
        return middleware

    @property
    def serving(self) -> bool:
        """The spider is the search service (``serves``), which lives on past what stops a crawl."""
        return bool(getattr(self.crawler.spider, "serves", False))

    def crawl_stopping(self) -> None:
        self.stopped = True

    def stopping(self) -> bool:
        """No call may leave: a fatal answer came, the day's calls are used, or the crawl is shutting down.

        Scrapy's graceful stop waits for every request in progress, and a call may be waiting for
        its quota slot for most of an hour: such a call gives up instead (see pacing.WAKE_SECONDS),
        so a stop takes a second, not an hour, and spends no call. ``_engine`` is what Scrapy
        documents for code that may run before the crawl starts.
        """
        engine = self.crawler._engine
        if self.resumes_at is not None and datetime.now(UTC) >= self.resumes_at:
            logger.info("The gateway's quota day has turned: calls go again")
            self.resumes_at, self.day_used_up, self.stopped = None, None, False
        return self.stopped or self.day_used_up is not None or (engine is not None and not engine.running)

    def backoff_delay(self, retry_times: int) -> float:
        if retry_times < 1 or self.backoff <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff * 2.0 ** (retry_times - 1))

    async def process_request(self, request: Request) -> None:
        method = request.meta.get(METHOD_META_KEY)
        if method is None:
            return None
        delay = self.backoff_delay(request.meta.get("retry_times", 0))
        clock = self.pacer.clock
        ticket: CallTicket | None = request.meta.get(CALL_TICKET_META_KEY)
        stopping = self.stopping
        if ticket is not None and ticket.deadline is not None:
            def stopping() -> bool:  # the service's caller stops waiting at its deadline
                return self.stopping() or ticket.expired(clock())
        self.unbooked += 1
        try:
            await self._first_answer(request, stopping)
            if not self._answered:
                # The first call, before the gateway has answered once, is not retried for minutes: a
                # wrong endpoint or a dead network is said in seconds (the crawl stops, resumable).
                retries = request.meta.get("max_retry_times", self.crawler.settings.getint("RETRY_TIMES"))
                request.meta["max_retry_times"] = min(retries, self.probe_retry_times)
            backed_off = await sleep_until(clock() + delay, clock, stopping)
        finally:
            self.unbooked -= 1
        try:
            if ticket is not None and backed_off:
                ticket.booked = True  # wait_turn books its slot as soon as it is awaited, before any wait
            app = await self.pacer.wait_turn(stopping, self._max_wait(request, ticket)) if backed_off else None
        except SlotTooLate as late:
            assert ticket is not None
            ticket.booked, ticket.refusal, ticket.wait = False, "quota_wait", late.wait
            app = None
        except SharedRunUnavailable as exc:  # a shared run's Redis is gone: this worker stops, resumable
            self._redis_gone(exc)
            if ticket is not None:
                ticket.refusal = "redis"
            app = None
        if ticket is not None and app is None and ticket.refusal is None and ticket.expired(clock()):
            ticket.refusal = "timeout"
        sendable = app is not None
        if app is not None:
            request.meta[APP_META_KEY] = app  # the key it is booked on signs it
        if self.day_used_up is not None:
            # An answer said the day's calls are all used, and here is a call that is due: it would be refused.
            self._stop(self.day_used_up)
            sendable = False
        if not sendable:
            self.release_probe(request)  # not sent: if it was the first call, the next goes in its place
            raise GatewayStopped("not sent: the crawl is stopping")
        stats = self.crawler.stats
        stats.inc_value("imagesearch/calls")
        stats.inc_value(f"imagesearch/calls/{method}")
        if ticket is not None:
            ticket.calls += 1
            if ticket.deadline is not None:  # its answer is not awaited past the caller's deadline
                left = max(1.0, ticket.deadline - clock())
                timeout = request.meta.get("download_timeout", self.crawler.settings.getfloat("DOWNLOAD_TIMEOUT"))
                request.meta["download_timeout"] = min(float(timeout), left)
        return None

    def _max_wait(self, request: Request, ticket: CallTicket | None) -> float | None:
        """How long a service call's first attempt may wait for its slot (None: as long as it takes). A call
        sent again (a retry, or after a ban it was let wait out) keeps its caller's deadline only."""
        if ticket is None or ticket.max_wait is None:
            return None
        if request.meta.get("retry_times") or request.meta.get(THROTTLED_META_KEY):
            return None
        if ticket.deadline is None:
            return ticket.max_wait
        return max(0.0, min(ticket.max_wait, ticket.deadline - self.pacer.clock()))

    def _redis_gone(self, exc: SharedRunUnavailable) -> None:
        if self.serving:  # the service fails this call only; Redis may come back
            logger.error("%s: this search fails", exc)
            return
        self.stopped = True
        from pipeline.components.datasetrun import DatasetRun

        run = self.crawler.get_extension(DatasetRun)
        if run is not None and run.shared is not None:
            run.shared.unavailable(exc)
        else:
            logger.error("%s: the crawl stops", exc)
            self.crawler.stats.set_value(STOP_MESSAGE_STAT, f"{exc}: the crawl stops")

    def release_probe(self, request: Request) -> None:
        """``request``, if it was the first call, ended without the gateway's answer (not sent, or its retries
        spent): the next call goes in its place. A crawl stops then; the search service lives on, and a
        caller after a gateway that was down must not wait for ever behind a call that is over."""
        token = request.meta.pop(_PROBE_META_KEY, None)
        # Retries carry the first call's token too: only the first of them to end gives the place back.
        if not self._answered and token is not None and token is self._probe:
            self._probe = None

    async def _first_answer(self, request: Request, stopping: Callable[[], bool]) -> None:
        """Return at once for the first call (its retries too) and after the gateway's first answer; wait in
        between, until ``stopping()`` (the crawl's stop, or a service caller's deadline)."""
        if request.meta.get(_PROBE_META_KEY):
            return
        while not self._answered and not stopping():  # a stop frees them as well
            if self._probe is None:  # the first call, or the next in place of one never sent
                self._probe = request.meta[_PROBE_META_KEY] = object()
                return
            await sleep(_FIRST_ANSWER_POLL_SECONDS)

    def silence(self) -> tuple[float, int]:
        """Seconds since the gateway last answered while attempts since then failed, and how many
        failed; ``(0, 0)`` while it answers (or before it ever did: the crawl then stops on its own)."""
        if not self._answered or not self._failed_since:
            return 0.0, 0
        return self.pacer.clock() - self._last_answer, self._failed_since

    @property
    def mean_latency(self) -> float:
        """Mean seconds from sending a call to its answer (0 before the first answer)."""
        return self._latency_sum / self._latency_count if self._latency_count else 0.0

    def _got_answer(self) -> None:
        """The gateway answered (its own format, success or error): the calls held back may go."""
        self._answered = True
        self.crawler.stats.inc_value("imagesearch/answers")
        now = self.pacer.clock()
        if self._failed_since:
            self.longest_silence = max(self.longest_silence, now - self._last_answer)
            self.crawler.stats.set_value("imagesearch/longest_silence_seconds", round(self.longest_silence, 3))
        if self._warned_at is not None:
            logger.warning("The gateway answers again, after %.0f s without an answer", now - self._last_answer)
        self._last_answer, self._failed_since, self._warned_at = now, 0, None

    def _no_answer(self, what: str) -> None:
        """An attempt got no answer of the gateway's: say so once a minute while an outage lasts."""
        self._failed_since += 1
        self.crawler.stats.inc_value("imagesearch/attempts_failed")
        now = self.pacer.clock()
        silent = now - self._last_answer
        due = self._warned_at is None or now - self._warned_at >= self.outage_warning
        if self._answered and self.outage_warning and silent >= self.outage_warning and due:
            self._warned_at = now
            logger.warning("The gateway has not answered for %.0f s (%d attempts failed, the last: %s): still retrying",
                           silent, self._failed_since, what)

    def process_exception(self, request: Request, exception: Exception) -> None:
        method = request.meta.get(METHOD_META_KEY)
        if method is None or isinstance(exception, GatewayStopped):
            return None
        if isinstance(exception, ImageRejected):
            # Its picture could not be read as it left (changed, gone): not sent, so not a call, and
            # no word on the gateway either: if it was the first call, the next one goes in its place.
            stats = self.crawler.stats
            stats.inc_value("imagesearch/calls", -1)
            stats.inc_value(f"imagesearch/calls/{method}", -1)
            if (ticket := request.meta.get(CALL_TICKET_META_KEY)) is not None:
                ticket.calls -= 1
            self.release_probe(request)
            return None
        self._no_answer(f"{type(exception).__name__}: {exception}")
        return None

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get(METHOD_META_KEY) is None:
            return response
        if response.status != 200 and response.status not in self.gateway.error_statuses:
            self._no_answer(f"HTTP {response.status}")
            return response
        # A replayed answer's count is of the day it was received on.
        quota = None if REPLAYED_FLAG in response.flags else self.gateway.daily_quota(response)
        if quota is not None:
            self.crawler.stats.set_value("imagesearch/daily_quota", f"{quota.used}/{quota.limit}")
        if quota is not None and quota.spent and not self._set_aside(request, str(quota)):
            # This answer may be the crawl's last: the crawl stops only if another call is due.
            self.day_used_up = str(quota)
        error = self.gateway.parse_error(response)
        if REPLAYED_FLAG not in response.flags:
            if isinstance(error, MalformedResponse):
                self._no_answer(error.describe())
            else:
                self._got_answer()
                if (latency := request.meta.get("download_latency")) is not None:
                    self._latency_sum += float(latency)
                    self._latency_count += 1
                if request.meta.pop(_PROBE_META_KEY, None):
                    request.meta.pop("max_retry_times", None)  # answered: its retries are RETRY_TIMES again
        if error is None:
            return response
        self.crawler.stats.inc_value(f"imagesearch/errors/{error.code}")
        action = self.actions.action_for(error)
        if action == STOP:
            if self._set_aside(request, self._limit(error, quota)):
                again = request.copy()  # not sent on that key: the next free key takes it
                again.dont_filter = True
                return again
            self._stop(self._limit(error, quota))
            raise GatewayStopped(f"not answered: {error.describe()}")  # its seed stays unsearched, for the resume
        resend: Request | None = None
        if action == RETRY:
            resend = self._retry(request, error)
        elif action == THROTTLE:
            resend = self._throttle(request, error)
        elif action == FATAL:
            self.stopped = True
            self.fatal = error.code
        if resend is not None:
            return resend
        if response.status != 200:
            # The gateway's own answer, handled: Scrapy's RetryMiddleware must not send it again for its 5xx
            # status (its retry budget is spent, or its action is not to retry). It goes on to the spider.
            request.meta["dont_retry"] = True
        return response

    def _set_aside(self, request: Request, what: str) -> bool:
        """The app key this call went on has spent its calls for the day. With a pool of keys, that key is set
        aside until the day turns (for every worker of a shared Redis too) and True while another key of the
        pool is not spent; False when the crawl must stop."""
        apps = self.pacer.apps
        if len(apps) < 2:
            return False
        now = datetime.now(UTC)
        resets = self.gateway.quota_resets_at(now)
        seconds = max(0.0, (resets - now).total_seconds())
        index = request.meta.get(APP_META_KEY, 0)
        try:
            if not self.pacer.set_aside(index, seconds):
                return False
        except SharedRunUnavailable as exc:
            self._redis_gone(exc)
            return False
        if index not in self.keys_spent:
            self.keys_spent.add(index)
            self.crawler.stats.set_value("pacing/keys_spent_today", len(self.keys_spent))
            logger.warning("App %s has spent its calls for the day (%s): its calls go to the pool's other keys "
                           "until %s UTC", apps[index].label, what, f"{resets:%Y-%m-%d %H:%M}")
        return True

    def _limit(self, error: GatewayError, quota: DailyQuota | None) -> str:
        name = self.gateway.limit_name(error)
        return "; ".join(filter(None, (name, str(quota) if quota else None, error.describe())))

    def _stop(self, what: str) -> None:
        """The gateway takes no more calls today: nothing more is sent, and the crawl closes, resumable."""
        if self.stopped:
            return
        self.stopped = True
        now = datetime.now(UTC)
        resets = self.gateway.quota_resets_at(now)
        if self.serving:
            # The search service keeps serving what its cache holds, and calls again when the day turns.
            self.resumes_at = resets
            logger.error("The gateway's quota for the day is spent (%s): no call until %s UTC", what,
                         f"{resets:%Y-%m-%d %H:%M}")
            return
        minutes = max(0, int((resets - now).total_seconds() // 60))
        day_starts = self.gateway.quota_day_starts
        if job_dir(self.crawler.settings):
            carry_on = "it resumes where it stopped, spending no call twice"
        else:
            carry_on = "this run is committed incomplete; with -s JOBDIR=DIR a stopped crawl resumes instead"
        message = (
            f"the gateway's quota for the day is spent ({what}): the crawl stops; run the same command again "
            f"after {resets:%Y-%m-%d %H:%M} UTC ({day_starts}, in {minutes // 60} h {minutes % 60:02d} min): "
            f"{carry_on}"
        )
        logger.error(message)
        self.crawler.stats.set_value(STOP_MESSAGE_STAT, message)
        engine = self.crawler._engine  # see stopping()
        if engine is not None and engine.spider is not None:
            closing = deferred_from_coro(engine.close_spider_async(reason=QUOTA_SPENT_REASON))
            closing.addErrback(lambda failure: logger.error("Closing the crawl failed", exc_info=failure.value))

    def _retry(self, request: Request, error: GatewayError) -> Request | None:
        assert self.crawler.spider is not None
        return get_retry_request(
            request, spider=self.crawler.spider, reason=f"gateway_error_{error.code}", logger=logger
        )

    def _throttle(self, request: Request, error: GatewayError) -> Request | None:
        times = request.meta.get(THROTTLED_META_KEY, 0) + 1
        if times > self.throttle_max_times:
            logger.warning("Gave up waiting for the quota after %d bans: %s", times - 1, error.describe())
            return None
        seconds = self.gateway.ban_seconds(error)
        wait = self.throttle_default_wait if seconds is None else seconds
        self.pacer.ban(wait, request.meta.get(APP_META_KEY, 0))
        self.crawler.stats.inc_value("imagesearch/throttled")
        logger.info("Gateway call limit reached (%s): pausing calls for %.1f s", self._limit(error, None), wait)
        ticket: CallTicket | None = request.meta.get(CALL_TICKET_META_KEY)
        if ticket is not None and ticket.expired(self.pacer.clock() + wait):
            return None  # its caller would be gone before the ban ends: told when to come back instead
        again = request.copy()
        again.meta[THROTTLED_META_KEY] = times
        again.dont_filter = True
        return again
