"""Quota-true pacing of gateway calls: never more than IMAGESEARCH_QUOTA calls per window per app key."""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from scrapy.utils.asyncio import sleep
from scrapy.utils.misc import load_object

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

_QUOTA_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")
#: Longest single sleep of a waiting call: how soon it notices that the crawl is stopping. Under a
#: real quota a call may wait most of an hour for its slot; Scrapy's graceful stop (Ctrl-C, SIGTERM)
#: waits for every call in progress, so an uninterruptible wait would hold the stop for that long.
WAKE_SECONDS = 0.5


def _never() -> bool:
    return False


async def sleep_until(deadline: float, clock: Callable[[], float], stopping: Callable[[], bool] = _never) -> bool:
    """Sleep until ``clock()`` reaches ``deadline``; False once ``stopping()`` holds (checked every WAKE_SECONDS)."""
    while (left := deadline - clock()) > 0:
        if stopping():
            return False
        await sleep(min(left, WAKE_SECONDS))
    return not stopping()


@dataclass(frozen=True)
class Quota:
    """``calls`` per ``seconds``, e.g. ``Quota.parse("1000/3600")``."""

    calls: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Quota:
        match = _QUOTA_RE.match(str(text))
        if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise ValueError(f"IMAGESEARCH_QUOTA={text!r}: expected CALLS/SECONDS, e.g. 1000/3600")
        return cls(int(match.group(1)), float(match.group(2)))

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds


class QuotaStore(Protocol):
    """Where the pacing state of each app key lives.

    The in-memory store serves one crawler; several crawlers on several machines sharing one
    app key need a shared store (e.g. Redis) implementing the same two calls atomically.
    """

    def reserve(self, key: str, quota: Quota, now: float, margin: float) -> float:
        """Book the next call slot for ``key`` and return the time (``now``'s clock) it may be sent."""

    def ban(self, key: str, until: float) -> None:
        """No call for ``key`` may be sent before ``until``."""

    def banned_until(self, key: str) -> float:
        """The end of ``key``'s current ban (0 when none)."""


def project_slots(booked: list[float], quota: Quota, now: float, margin: float, calls: int) -> float:
    """When the last of ``calls`` more calls could go, after the slots ``booked`` (their times, in
    order) under a sliding window: the schedule ``reserve`` would give them. ``now`` if ``calls`` is 0."""
    window: deque[float] = deque(booked[-quota.calls:], maxlen=quota.calls)
    last = max(window, default=now)
    for _ in range(calls):
        at = now
        if len(window) == quota.calls:
            at = max(at, window[0] + quota.seconds + margin)
        window.append(at)
        last = at
    return max(last, now)


class InMemoryQuotaStore:
    """A sliding-window schedule per key: the times of the last ``quota.calls`` booked calls.

    A call may go when fewer than ``calls`` calls were booked in the window before it, so the
    schedule bursts up to the quota and then follows the window exactly, which is what a gateway
    with a sliding window allows. ``margin`` is added to the window to absorb latency jitter
    between our clock and the gateway's.
    """

    def __init__(self) -> None:
        self._booked: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def reserve(self, key: str, quota: Quota, now: float, margin: float) -> float:
        booked = self._booked.get(key)
        if booked is None or booked.maxlen != quota.calls:
            booked = self._booked[key] = deque(booked or (), maxlen=quota.calls)
        at = max(now, self._banned_until.get(key, 0.0))
        if len(booked) == quota.calls:
            at = max(at, booked[0] + quota.seconds + margin)
        booked.append(at)
        return at

    def ban(self, key: str, until: float) -> None:
        self._banned_until[key] = max(self._banned_until.get(key, 0.0), until)

    def banned_until(self, key: str) -> float:
        return self._banned_until.get(key, 0.0)

    def projected(self, key: str, quota: Quota, now: float, margin: float, calls: int) -> float:
        """When the last of ``calls`` more calls for ``key`` could go (for the progress ETA); books nothing."""
        start = max(now, self.banned_until(key))
        return project_slots(list(self._booked.get(key, ())), quota, start, margin, calls)


class QuotaPacer:
    """Decides when each gateway call may go: within IMAGESEARCH_QUOTA, and never during a quota ban.

    Used by ``pipeline.middlewares.GatewayMiddleware`` just before signing, so a call signed after
    its wait still carries a fresh timestamp. A quota answer from the gateway bans every call for
    the app key (not just the one that failed) until the ban is over.
    Stats: ``pacing/calls``, ``pacing/waits``, ``pacing/wait_seconds``, ``pacing/quota_errors``,
    ``pacing/ban_seconds``.
    """

    def __init__(
        self,
        crawler: Crawler,
        quota: Quota | None,
        store: QuotaStore,
        key: str,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = crawler.stats
        self.quota = quota
        self.store = store
        self.key = key
        self.margin = margin
        self.clock = clock
        #: Seconds calls have waited for their quota slot so far (stat pacing/wait_seconds).
        self.waited = 0.0
        #: Calls waiting for their slot (or a ban's end) right now.
        self.waiting = 0
        #: Seconds of quota bans the gateway imposed so far (stat pacing/ban_seconds).
        self.banned = 0.0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        spec = settings.get("IMAGESEARCH_QUOTA")
        quota = Quota.parse(spec) if spec else None
        store_cls = load_object(settings.get("IMAGESEARCH_QUOTA_STORE"))
        store = store_cls.from_crawler(crawler) if hasattr(store_cls, "from_crawler") else store_cls()
        pacer = cls(
            crawler,
            quota,
            store,
            settings.get("IMAGESEARCH_APP_KEY") or "",
            settings.getfloat("IMAGESEARCH_QUOTA_MARGIN"),
        )
        if quota:
            crawler.stats.set_value("pacing/quota", f"{quota.calls}/{quota.seconds:g}")
            logger.info("Pacing gateway calls to %d per %g s (%.3g calls/s)", quota.calls, quota.seconds, quota.rate)
        return pacer

    async def wait_turn(self, stopping: Callable[[], bool] = _never) -> bool:
        """Return True when this call may be sent, or False as soon as ``stopping()`` holds (send nothing then)."""
        now = self.clock()
        at = self.store.reserve(self.key, self.quota, now, self.margin) if self.quota else now
        self.stats.inc_value("pacing/calls")
        self.waiting += 1
        try:
            if at > now:
                self.stats.inc_value("pacing/waits")
                self.waited += at - now
                self.stats.set_value("pacing/wait_seconds", round(self.waited, 3))
                if not await sleep_until(at, self.clock, stopping):
                    return False
            # A ban that arrived while this call waited for its slot holds it too.
            while (until := self.store.banned_until(self.key)) > self.clock():
                if not await sleep_until(until, self.clock, stopping):
                    return False
            return not stopping()
        finally:
            self.waiting -= 1

    def ban_left(self) -> float:
        """Seconds until the current quota ban ends (0 when none)."""
        return max(0.0, self.store.banned_until(self.key) - self.clock())

    def projected_end(self, calls: int) -> float | None:
        """``clock()`` time at which the last of ``calls`` more calls may go under the quota and any ban;
        None without a quota. A store without ``projected`` (the sliding window's own schedule) is
        assumed to have its whole quota free now."""
        if self.quota is None:
            return None
        now = self.clock()
        projected = getattr(self.store, "projected", None)
        if projected is not None:
            end: float = projected(self.key, self.quota, now, self.margin, calls)
            return end
        start = max(now, self.store.banned_until(self.key))
        return project_slots([], self.quota, start, self.margin, calls)

    def ban(self, seconds: float) -> None:
        """The gateway said the quota is spent: hold every call for this key for ``seconds``."""
        self.stats.inc_value("pacing/quota_errors")
        self.banned += max(0.0, seconds)
        self.stats.set_value("pacing/ban_seconds", round(self.banned, 3))
        self.store.ban(self.key, self.clock() + max(0.0, seconds))
