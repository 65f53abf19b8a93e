"""Quota-true pacing of gateway calls: never more than IMAGESEARCH_QUOTA calls per window per app key."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from scrapy.utils.asyncio import sleep
from scrapy.utils.misc import load_object

from pipeline.pacing.apps import App, Quota

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


logger = logging.getLogger(__name__)

#: Longest single sleep of a waiting call: how soon it notices that the crawl is stopping. Under a
#: real quota a call may wait most of an hour for its slot; Scrapy's graceful stop (Ctrl-C, SIGTERM)
#: waits for every call in progress, so an uninterruptible wait would hold the stop for that long.
WAKE_SECONDS = 0.5
#: IMAGESEARCH_QUOTA_STORE's default; with IMAGESEARCH_REDIS_URL the Redis store is used in its place.
DEFAULT_STORE = "pipeline.pacing.quota.InMemoryQuotaStore"


def _never() -> bool:
    return False


async def sleep_until(deadline: float, clock: Callable[[], float], stopping: Callable[[], bool] = _never) -> bool:
    """Sleep until ``clock()`` reaches ``deadline``; False once ``stopping()`` holds (checked every WAKE_SECONDS)."""
    while (left := deadline - clock()) > 0:
        if stopping():
            return False
        await sleep(min(left, WAKE_SECONDS))
    return not stopping()


class SlotTooLate(Exception):
    """No quota slot is free by the time a call was given (nothing was booked): ``wait`` seconds to the next."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the next call may go in {wait:.1f} s")
        self.wait = wait


#: A quota to book on: the name of an app key's quota in the store (pipeline.pacing.apps.App.slot) and the
#: quota (None: calls on it are not paced).
Slot = tuple[str, "Quota | None"]


class QuotaStore(Protocol):
    """Where the pacing state of each app key lives.

    The in-memory store serves one crawler; crawlers sharing app keys (several processes or
    machines) use a shared one (pipeline.shared.quota.RedisQuotaStore) implementing the same calls
    atomically. Times are the caller's clock (``now``); a shared store keeps its own (Redis') and
    converts.
    """

    def reserve(self, slots: Sequence[Slot], now: float, margin: float,
                latest: float | None = None) -> tuple[int, float]:
        """Book the earliest free call slot over ``slots`` (a pool of app keys): its index in ``slots``
        and the time (``now``'s clock) the call may be sent. With ``latest`` (only passed when given, so a
        store without it still serves crawls): book nothing when that time is after ``latest``."""

    def ban(self, key: str, now: float, seconds: float) -> None:
        """No call for ``key`` may be sent in the next ``seconds``."""

    def banned_until(self, key: str, now: float) -> float:
        """The end of ``key``'s current ban (``now``'s clock; 0 when none)."""


def project_pool(booked: Sequence[Sequence[float]], quotas: Sequence[Quota | None], starts: Sequence[float],
                 margin: float, calls: int, now: float) -> float:
    """When the last of ``calls`` more calls could go, given each key's booked slots (their times, in
    order), quota and earliest start (``now`` or its ban's end): the schedule ``reserve`` would give
    them, each call on the key free first; with ``calls`` 0, the last slot booked already (or ``now``)."""
    windows = [deque(times[-quota.calls:] if quota else (), maxlen=quota.calls if quota else 1)
               for times, quota in zip(booked, quotas, strict=True)]
    last = max([now, *(window[-1] for window in windows if window)])  # slots booked already come first
    for _ in range(calls):
        best, best_at = 0, math.inf
        for index, (window, quota, start) in enumerate(zip(windows, quotas, starts, strict=True)):
            at = start
            if quota is not None and len(window) == quota.calls:
                at = max(at, window[0] + quota.seconds + margin)
            if at < best_at:
                best, best_at = index, at
        if quotas[best] is not None:
            windows[best].append(best_at)
        last = max(last, best_at)
    return max(last, now)


def project_slots(booked: list[float], quota: Quota, now: float, margin: float, calls: int) -> float:
    """``project_pool`` for one key."""
    return project_pool([booked], [quota], [now], margin, calls, now)


class InMemoryQuotaStore:
    """A sliding-window schedule per key: the times of the last ``quota.calls`` booked calls.

    A call may go when fewer than ``calls`` calls were booked in the window before it, so the
    schedule bursts up to the quota and then follows the window exactly, which is what a gateway
    with a sliding window allows. ``margin`` is added to the window to absorb latency jitter
    between our clock and the gateway's. With a pool of keys, each call is booked on the key whose
    next slot comes first (the first key on a tie).
    """

    def __init__(self) -> None:
        self._booked: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def _window(self, key: str, quota: Quota) -> deque[float]:
        booked = self._booked.get(key)
        if booked is None or booked.maxlen != quota.calls:
            booked = self._booked[key] = deque(booked or (), maxlen=quota.calls)
        return booked

    def _next(self, key: str, quota: Quota | None, now: float, margin: float) -> float:
        at = max(now, self._banned_until.get(key, 0.0))
        if quota is not None:
            booked = self._window(key, quota)
            if len(booked) == quota.calls:
                at = max(at, booked[0] + quota.seconds + margin)
        return at

    def reserve(self, slots: Sequence[Slot], now: float, margin: float,
                latest: float | None = None) -> tuple[int, float]:
        times = [self._next(key, quota, now, margin) for key, quota in slots]
        index = min(range(len(times)), key=times.__getitem__)
        key, quota = slots[index]
        if quota is not None and (latest is None or times[index] <= latest):
            self._window(key, quota).append(times[index])
        return index, times[index]

    def ban(self, key: str, now: float, seconds: float) -> None:
        self._banned_until[key] = max(self._banned_until.get(key, 0.0), now + max(0.0, seconds))

    def banned_until(self, key: str, now: float) -> float:
        return self._banned_until.get(key, 0.0)

    def projected(self, slots: Sequence[Slot], now: float, margin: float, calls: int) -> float:
        """When the last of ``calls`` more calls could go (for the progress ETA); books nothing."""
        return project_pool([list(self._booked.get(key, ())) for key, _ in slots], [quota for _, quota in slots],
                            [max(now, self.banned_until(key, now)) for key, _ in slots], margin, calls, now)


class QuotaPacer:
    """Decides when each gateway call may go, and on which app key: within each key's quota, and never
    during a quota ban of that key.

    Used by ``pipeline.components.middlewares.GatewayMiddleware`` just before signing, so a call signed after
    its wait still carries a fresh timestamp. A quota answer from the gateway bans every call for
    that app key (not just the one that failed) until the ban is over; with a pool of keys
    (IMAGESEARCH_APP_KEYS) the calls go on on the others.
    Stats: ``pacing/calls``, ``pacing/waits``, ``pacing/wait_seconds``, ``pacing/quota_errors``,
    ``pacing/ban_seconds``, and with a pool ``pacing/calls/<key1...>``.
    """

    def __init__(
        self,
        crawler: Crawler,
        apps: Sequence[App],
        store: QuotaStore,
        margin: float,
        scope: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = crawler.stats
        self.apps = tuple(apps)
        #: The pool's quotas as the store knows them (a hash of the gateway and each key).
        self.slots: list[Slot] = [(app.slot(scope), app.quota) for app in self.apps]
        self.store = store
        #: Whether the store books within a bound (``reserve(..., latest=)``); a user's own may not.
        self._bounded = "latest" in inspect.signature(store.reserve).parameters
        self.margin = margin
        self.clock = clock
        #: Seconds calls have waited for their quota slot so far (stat pacing/wait_seconds).
        self.waited = 0.0
        #: Calls waiting for their slot (or a ban's end) right now.
        self.waiting = 0
        #: Seconds of quota bans the gateway imposed so far (stat pacing/ban_seconds).
        self.banned = 0.0

    @property
    def quota(self) -> Quota | None:
        """The pool's combined quota per the first key's window (None when calls are not paced)."""
        quotas = [app.quota for app in self.apps]
        if not quotas or any(quota is None for quota in quotas):
            return None
        first = quotas[0]
        assert first is not None
        return Quota(sum(round(q.rate * first.seconds) for q in quotas if q is not None), first.seconds)

    @classmethod
    def from_crawler(cls, crawler: Crawler, apps: Sequence[App], margin: float) -> Self:
        """The crawl's pacer over ``apps`` (pipeline.pacing.apps.app_pool), ``margin`` seconds early on each
        window's end (the gateway's IMAGESEARCH_QUOTA_MARGIN)."""
        settings = crawler.settings
        store_path = settings.get("IMAGESEARCH_QUOTA_STORE")
        if settings.get("IMAGESEARCH_REDIS_URL") and store_path == DEFAULT_STORE:
            store_path = "pipeline.shared.quota.RedisQuotaStore"  # every worker of the Redis sees the same quota
        store_cls = load_object(store_path)
        store = store_cls.from_crawler(crawler) if hasattr(store_cls, "from_crawler") else store_cls()
        pacer = cls(crawler, apps, store, margin,
                    scope=str(settings.get("IMAGESEARCH_GATEWAY") or "top"))
        if (quota := pacer.quota) is not None:
            crawler.stats.set_value("pacing/quota", f"{quota.calls}/{quota.seconds:g}")
            keys = f" over {len(apps)} app keys" if len(apps) > 1 else ""
            logger.info("Pacing gateway calls to %d per %g s (%.3g calls/s)%s", quota.calls, quota.seconds,
                        quota.rate, keys)
        return pacer

    async def wait_turn(self, stopping: Callable[[], bool] = _never, max_wait: float | None = None) -> int | None:
        """The pool index of the app key this call goes on, once it may be sent; None as soon as
        ``stopping()`` holds (send nothing then). With ``max_wait``, SlotTooLate when no slot is free
        within that many seconds, decided in the same step as the booking (the search service's caller
        does not wait past IMAGESEARCH_SERVE_MAX_WAIT, however many calls another crawl booked meanwhile).
        A store whose ``reserve`` takes no ``latest`` books as before, unbounded."""
        now = self.clock()
        if max_wait is None or not self._bounded:
            index, at = self.store.reserve(self.slots, now, self.margin)
        else:
            latest = now + max(0.0, max_wait)
            index, at = self.store.reserve(self.slots, now, self.margin, latest=latest)
            if at > latest:
                raise SlotTooLate(at - now)
        self.stats.inc_value("pacing/calls")
        if len(self.apps) > 1:
            self.stats.inc_value(f"pacing/calls/{self.apps[index].label}")
        key = self.slots[index][0]
        self.waiting += 1
        try:
            if at > now:
                self.stats.inc_value("pacing/waits")
                self.waited += at - now
                self.stats.set_value("pacing/wait_seconds", round(self.waited, 3))
                if not await sleep_until(at, self.clock, stopping):
                    return None
                # A ban that arrived while this call waited for its slot holds it too (a call that did
                # not wait was booked with the bans as they are).
                while (until := self.store.banned_until(key, self.clock())) > self.clock():
                    if not await sleep_until(until, self.clock, stopping):
                        return None
            return None if stopping() else index
        finally:
            self.waiting -= 1

    def ban_left(self) -> float:
        """Seconds until a call can go again for a quota ban (0 while any key of the pool is not banned)."""
        now = self.clock()
        try:
            return min(max(0.0, self.store.banned_until(key, now) - now) for key, _ in self.slots)
        except Exception:  # noqa: BLE001 - a shared store that is gone: its calls say so
            return 0.0

    def projected_end(self, calls: int) -> float | None:
        """``clock()`` time at which the last of ``calls`` more calls may go under the quotas and any ban;
        None without a quota. A store without ``projected`` (the sliding window's own schedule) is
        assumed to have its whole quota free now."""
        if self.quota is None:
            return None
        now = self.clock()
        projected = getattr(self.store, "projected", None)
        if projected is not None:
            try:
                end: float = projected(self.slots, now, self.margin, calls)
            except Exception:  # noqa: BLE001 - a shared store that is gone: no ETA (its calls say why)
                return None
            return end
        starts = [max(now, self.store.banned_until(key, now)) for key, _ in self.slots]
        return project_pool([[] for _ in self.slots], [quota for _, quota in self.slots], starts, self.margin,
                            calls, now)

    def set_aside(self, index: int, seconds: float) -> bool:
        """App key ``index`` has spent its day: no call on it for ``seconds`` (until the day turns). True while
        another key of the pool is not set aside (a shared store knows what other crawlers set aside)."""
        now = self.clock()
        self.store.ban(self.slots[index][0], now, seconds)
        horizon = now + seconds - 60.0  # set aside: banned until about the day's turn
        return any(self.store.banned_until(key, now) < horizon for key, _ in self.slots)

    def ban(self, seconds: float, index: int = 0) -> None:
        """The gateway said the quota of app key ``index`` is spent: hold its calls for ``seconds``."""
        self.stats.inc_value("pacing/quota_errors")
        self.banned += max(0.0, seconds)
        self.stats.set_value("pacing/ban_seconds", round(self.banned, 3))
        self.store.ban(self.slots[index][0], self.clock(), max(0.0, seconds))
