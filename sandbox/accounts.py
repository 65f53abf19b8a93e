"""The registered apps' accounts, shared by every protocol: call-rate windows, daily counts, and what was seen."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.timezones import CHINA_TZ
from sandbox.config import AppConfig, SandboxConfig

#: The platforms' day starts at 00:00 China time.
CHINA_OFFSET_SECONDS = CHINA_TZ.utcoffset(None).total_seconds()


class SandboxStats:
    """What the sandbox saw, served at ``/_sandbox/stats``; ``calls.total`` counts every request to an API path."""

    FAULT_KINDS: tuple[str, ...] = ("5xx", "slow", "garbage", "drop", "remote")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls_total = 0
        self.by_method: Counter[str] = Counter()
        self.by_app: Counter[str] = Counter()
        self.by_protocol: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.quota_refused = 0
        self.daily_refused = 0
        self.faults: Counter[str] = Counter(dict.fromkeys(self.FAULT_KINDS, 0))
        #: Wall-clock times (Unix seconds) of the first and the last call, for measuring a crawl's pace.
        self.first_call_at: float | None = None
        self.last_call_at: float | None = None
        #: Listing pictures served (``/img/...``), by path: a crawl fetches each once.
        self.pictures: Counter[str] = Counter()

    def record_call(self, protocol: str, method: str, app_key: str) -> None:
        self.calls_total += 1
        self.last_call_at = time.time()
        if self.first_call_at is None:
            self.first_call_at = self.last_call_at
        self.by_protocol[protocol] += 1
        if method:
            self.by_method[method] += 1
        if app_key:
            self.by_app[app_key] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": {
                "total": self.calls_total, "by_method": dict(self.by_method), "by_app": dict(self.by_app),
                "by_protocol": dict(self.by_protocol),
                "first_at": self.first_call_at, "last_at": self.last_call_at,
            },
            "errors": dict(self.errors),
            "quota_refused": self.quota_refused,
            "daily_refused": self.daily_refused,
            "faults": dict(self.faults),
            "pictures": {"total": sum(self.pictures.values()), "by_path": dict(self.pictures)},
        }


class QuotaLedger:
    """Per-app sliding-window quota: at most ``calls`` accepted calls in any ``seconds``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accepted: defaultdict[str, deque[float]] = defaultdict(deque)

    def wait(self, app: AppConfig) -> int | None:
        """None when a call may be accepted now, else the whole seconds (>= 1) until the window frees one."""
        left = self.free_in(app)
        return None if left is None else max(1, math.ceil(left))

    def free_in(self, app: AppConfig) -> float | None:
        """None when a call may be accepted now, else the seconds until the window frees one."""
        now = self._clock()
        window = self._accepted[app.key]
        while window and window[0] <= now - app.seconds:
            window.popleft()
        if len(window) >= app.calls:
            return window[0] + app.seconds - now
        return None

    def charge(self, app: AppConfig) -> None:
        self._accepted[app.key].append(self._clock())

    def reset(self) -> None:
        self._accepted.clear()


class DailyLedger:
    """Per-app calls accepted today; a day is ``day_seconds`` long and starts at 00:00 China time when it is 86400."""

    def __init__(self, day_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.day_seconds = day_seconds
        self._clock = clock
        self._used: dict[str, tuple[int, int]] = {}
        self._days_ended = 0  # days ended early by next_day()

    def _day(self) -> int:
        return math.floor((self._clock() + CHINA_OFFSET_SECONDS) / self.day_seconds) + self._days_ended

    def next_day(self) -> int:
        """End today now, as 00:00 China time does: every app's count for the day starts again. The new day's number."""
        self._days_ended += 1
        return self._day()

    def used(self, app: AppConfig) -> int:
        day, used = self._used.get(app.key, (self._day(), 0))
        return used if day == self._day() else 0

    def charge(self, app: AppConfig) -> int:
        """Count one call; the calls used today, this one included."""
        used = self.used(app) + 1
        self._used[app.key] = (self._day(), used)
        return used

    def reset(self) -> None:
        self._used.clear()


@dataclass(frozen=True)
class Refusal:
    """Why an app's call is refused before it runs: its window is full (``wait`` seconds) or its day is spent."""

    wait: int | None = None
    daily: bool = False


class Accounts:
    """The apps of a sandbox and what they may still call; one per sandbox, shared by its protocols."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.window = QuotaLedger(clock)
        self.daily = DailyLedger(config.day_seconds, wall_clock)
        self.stats = SandboxStats()

    def app(self, key: str) -> AppConfig | None:
        return self.config.app(key)

    def denied(self, key: str, method: str) -> bool:
        return (key, method) in self.config.denies

    def admit(self, app: AppConfig) -> Refusal | None:
        """Count a call against the app's window and day, or say why it is refused (a refusal costs nothing)."""
        if self.daily.used(app) >= self.daily_max(app):
            self.stats.daily_refused += 1
            return Refusal(daily=True)
        wait = self.window.wait(app)
        if wait is not None:
            self.stats.quota_refused += 1
            return Refusal(wait=wait)
        self.window.charge(app)
        self.daily.charge(app)
        return None

    def daily_max(self, app: AppConfig) -> int:
        """The calls ``app`` may make in a day: its own limit, else the sandbox's --daily-max."""
        return app.daily if app.daily is not None else self.config.daily_max

    def used_today(self, app: AppConfig) -> int:
        return self.daily.used(app)

    def reset(self) -> None:
        self.stats.reset()
        self.window.reset()
        self.daily.reset()

    def next_day(self) -> int:
        """The sandbox's next day begins now (its stats and quota windows are kept); its number."""
        return self.daily.next_day()
