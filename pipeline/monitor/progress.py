"""Progress of a long crawl: seeds done, calls spent and still needed, the quota's ETA, waits, bans, outages.

Under a quota the recent page rate says nothing about when a crawl ends: the calls still needed and
the quota do. :class:`CrawlProgress` (an extension, on by default) works that out every second from
the spider's searches (pages known so far, plus an estimate for the searches not begun), the pacer's
schedule (its booked slots, a ban) and the gateway middleware (how long the gateway has been silent),
and shows it:

- on a terminal (stderr is a TTY): a live bar (tqdm), with the crawl's log lines printed above it;
- in a log file, under cron, or piped: one plain INFO line every PROGRESS_INTERVAL seconds (and with
  LOG_FILE on a terminal: the bar on the terminal, the lines in the file).

The same figures are kept in stats (``progress/*``) and so reach the run manifest.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from twisted.internet.task import LoopingCall

from pipeline.errors import ConfigurationError, error_count

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from tqdm import tqdm

    from pipeline.components.middlewares import GatewayMiddleware

logger = logging.getLogger(__name__)

#: The seed outcomes, in the order the line gives them.
STATUSES = ("ok", "rejected", "failed", "unfinished")
#: PROGRESS_MODE values.
MODES = ("auto", "bar", "log")
#: How often the figures are worked out (and the bar redrawn), in seconds.
TICK_SECONDS = 1.0


@dataclass(frozen=True)
class Workload:
    """What is left of a crawl's searches, as its spider knows it (``spider.workload()``)."""

    #: Seeds given.
    seeds: int
    #: Calls still needed for the pages of searches whose page 1 has answered (page counts known).
    known_calls: int
    #: Calls estimated for the searches not begun (their page count is not known yet).
    estimated_calls: int
    #: Seeds whose search has not begun (their first page has not answered).
    seeds_not_begun: int
    #: A shared run's searches done by all its workers, and in all (None: the crawl is on its own).
    run_searches: tuple[int, int] | None = None

    @property
    def calls_needed(self) -> int:
        return self.known_calls + self.estimated_calls


@dataclass
class Snapshot:
    """The figures of one progress line."""

    elapsed: float
    seeds: int
    outcomes: dict[str, int]
    calls: int
    replayed: int
    known_calls: int
    estimated_calls: int
    seeds_not_begun: int
    quota: str | None
    waiting: int
    ban_left: float
    errors: int
    #: Seconds from now until the last call needed has answered; None when it cannot be told.
    eta_seconds: float | None
    silent_seconds: float
    failed_attempts: int
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: A shared run's searches done by all its workers, and in all.
    run_searches: tuple[int, int] | None = None

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    @property
    def calls_needed(self) -> int:
        return self.known_calls + self.estimated_calls

    @property
    def eta(self) -> datetime | None:
        return None if self.eta_seconds is None else self.now + timedelta(seconds=self.eta_seconds)


def duration(seconds: float) -> str:
    """``42 s``, ``7 min 05 s``, ``3 h 07 min``, ``2 d 03 h``: what a person reads at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def progress_line(snap: Snapshot, outage_after: float, ended: str | None = None) -> str:
    """One plain line of every figure, e.g. ``Progress after 12 min 30 s: seeds 40/120 done (38 ok,
    2 rejected); calls 96 spent, 190 still needed (30 on known pages + about 160 for 80 seeds not
    begun); quota 1000 per 3600 s; 8 calls waiting for their slot; errors 0; ETA 2026-12-02 19:40 UTC
    (in 41 min 10 s)``. ``ended``: the crawl's finish reason, for its last line."""
    outcomes = ", ".join(f"{snap.outcomes[s]:,} {s}" for s in STATUSES if snap.outcomes.get(s))
    if snap.run_searches is not None:
        done, total = snap.run_searches
        parts = [f"shared run: {done:,}/{total:,} searches done by all workers; this worker's seeds {snap.done:,} done"
                 + (f" ({outcomes})" if outcomes else "")]
    else:
        parts = [f"seeds {snap.done:,}/{snap.seeds:,} done" + (f" ({outcomes})" if outcomes else "")]
    calls = f"calls {snap.calls:,} spent"
    if snap.replayed:
        calls += f" (+{snap.replayed:,} replayed from JOBDIR)"
    calls += f", {snap.calls_needed:,} still needed"
    if snap.calls_needed:
        calls += f" ({snap.known_calls:,} on known pages"
        if snap.seeds_not_begun:
            calls += f" + about {snap.estimated_calls:,} for {_count(snap.seeds_not_begun, 'seed')} not begun"
        calls += ")"
    parts.append(calls)
    parts.append(f"quota {snap.quota}" if snap.quota else "no quota set")
    if snap.waiting:
        parts.append(f"{_count(snap.waiting, 'call')} waiting for their slot")
    if snap.ban_left > 0:
        parts.append(f"calls paused {duration(snap.ban_left)} more by the gateway's quota ban")
    parts.append(f"errors {snap.errors:,}")
    if outage_after and snap.silent_seconds >= outage_after:
        parts.append(f"NO ANSWER from the gateway for {duration(snap.silent_seconds)} "
                     f"({_count(snap.failed_attempts, 'attempt')} failed): still retrying")
    if ended is not None:
        parts.append(f"the crawl ended ({ended})")
    elif snap.eta is not None:
        parts.append(f"ETA {snap.eta:%Y-%m-%d %H:%M:%S} UTC (in {duration(snap.eta_seconds or 0)})")
    else:
        parts.append("ETA unknown until the gateway answers")
    return f"Progress after {duration(snap.elapsed)}: " + "; ".join(parts)


class BarSafeStream:
    """The stream of a log handler that shares the terminal with a tqdm bar: each whole line is
    written with the bar cleared, and the bar is drawn again below it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        from tqdm import tqdm

        self._pending += text
        if "\n" in self._pending:
            whole, _, self._pending = self._pending.rpartition("\n")
            with tqdm.external_write_mode(file=self.stream):
                self.stream.write(whole + "\n")
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class CrawlProgress:
    """Enabled by PROGRESS_ENABLED; PROGRESS_INTERVAL (seconds between plain lines) and PROGRESS_MODE
    (``auto``, ``bar``, ``log``) configure it. Works with any spider that has a ``workload()`` method
    returning a :class:`Workload` (the imagesearch spider does).

    Stats, kept current every second: ``progress/calls_needed``, ``progress/calls_planned`` (the
    estimate once every seed had been read: spent so far + still needed), ``progress/eta`` (ISO 8601,
    UTC), ``progress/elapsed_seconds``.
    """

    def __init__(self, crawler: Crawler, interval: float, mode: str) -> None:
        self.crawler = crawler
        self.interval = interval
        self.mode = mode
        self.outage_after = crawler.settings.getfloat("IMAGESEARCH_OUTAGE_WARNING")
        self.started = time.monotonic()
        self._loop: LoopingCall | None = None
        self._last_line: float | None = None
        self._bar: tqdm[Any] | None = None
        self._streams: list[tuple[logging.StreamHandler[Any], IO[str]]] = []
        self._bar_wanted = False
        self.planned: int | None = None
        self.last: Snapshot | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("PROGRESS_ENABLED"):
            raise NotConfigured("PROGRESS_ENABLED is off")
        interval = settings.getfloat("PROGRESS_INTERVAL")
        if not math.isfinite(interval) or interval <= 0:
            raise ConfigurationError(f"PROGRESS_INTERVAL={settings.get('PROGRESS_INTERVAL')!r}: give the seconds "
                                     "between progress lines, a number > 0 (or PROGRESS_ENABLED=False for none)")
        mode = str(settings.get("PROGRESS_MODE") or "auto").strip().lower()
        if mode not in MODES:
            raise ConfigurationError(f"PROGRESS_MODE={settings.get('PROGRESS_MODE')!r}: use one of {', '.join(MODES)}")
        extension = cls(crawler, interval, mode)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    # -- where it goes ---------------------------------------------------------------------------

    def _wants_bar(self) -> bool:
        if self.mode != "auto":
            return self.mode == "bar"
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty()) and self.crawler.settings.getbool("LOG_ENABLED")

    def _wants_lines(self) -> bool:
        """Plain lines too: always without a bar, and with one when the log goes to a file."""
        return not self._bar_wanted or bool(self.crawler.settings.get("LOG_FILE"))

    def _open_bar(self) -> None:
        from tqdm import tqdm

        try:
            sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
        except (OSError, ValueError, AttributeError):
            sized = False
        # A terminal that reports no size (a pty without one) gets 100 x 24, not a bar of none.
        size: dict[str, Any] = {"dynamic_ncols": True} if sized else {"ncols": 100, "nrows": 24}
        self._bar = tqdm(total=0, file=sys.stderr, unit="call", leave=True, **size,
                         bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} calls{postfix}",
                         mininterval=0, disable=False)
        # Log lines on stderr go above the bar, not through it.
        for handler in logging.root.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "isatty", lambda: False)():
                self._streams.append((handler, handler.stream))
                handler.setStream(BarSafeStream(handler.stream))

    def _close_bar(self) -> None:
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams = []
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- signals ---------------------------------------------------------------------------------

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        self._bar_wanted = self._wants_bar()
        self._loop = LoopingCall(self.tick)
        self._loop.start(TICK_SECONDS, now=False).addErrback(
            lambda failure: logger.error("Progress stopped", exc_info=failure.value))

    def spider_closed(self, reason: str) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        snap = self.snapshot()
        if snap is not None:
            self._record(snap)
            if self._bar is not None:
                self._draw(snap, ended=True)
            logger.info("%s", progress_line(snap, self.outage_after, ended=reason))
        self._close_bar()

    def tick(self) -> None:
        snap = self.snapshot()
        if snap is None:
            return
        self._record(snap)
        if self._bar_wanted:
            if self._bar is None:
                self._open_bar()
            self._draw(snap)
        now = time.monotonic()
        if self._wants_lines() and (self._last_line is None or now - self._last_line >= self.interval - 1e-3):
            self._last_line = now
            logger.info("%s", progress_line(snap, self.outage_after))

    # -- the figures -----------------------------------------------------------------------------

    def _middleware(self) -> GatewayMiddleware | None:
        from pipeline.components.middlewares import GatewayMiddleware

        return self.crawler.get_downloader_middleware(GatewayMiddleware) if self.crawler.engine else None

    def snapshot(self) -> Snapshot | None:
        """The figures now; None before the spider can tell its workload."""
        spider = self.crawler.spider
        workload = getattr(spider, "workload", None)
        if workload is None:
            return None
        work: Workload | None = workload()
        if work is None:
            return None
        stats = self.crawler.stats
        middleware = self._middleware()
        pacer = middleware.pacer if middleware is not None else None
        engine = self.crawler.engine
        # Calls waiting for their slot or on the wire hold booked slots: only the rest need new ones.
        in_downloader = len(engine.downloader.active) if engine is not None else 0
        booked = max(0, in_downloader - (middleware.unbooked if middleware is not None else 0))
        new_calls = max(0, work.calls_needed - booked)
        eta: float | None = None
        calls = int(stats.get_value("imagesearch/calls", 0))
        answered = bool(stats.get_value("imagesearch/answers"))
        latency = middleware.mean_latency if middleware is not None else 0.0
        if work.calls_needed == 0:
            eta = 0.0
        elif pacer is not None and pacer.quota is not None:
            end = pacer.projected_end(new_calls)  # None when a shared store cannot say
            eta = None if end is None else max(0.0, end - pacer.clock()) + latency
        elif answered and calls:
            elapsed = max(1e-3, time.monotonic() - self.started)
            eta = work.calls_needed / (calls / elapsed)  # no quota: the pace so far is all there is
        silent, failed = middleware.silence() if middleware is not None else (0.0, 0)
        errors = error_count(stats.get_stats())
        quota = pacer.quota if pacer is not None else None
        return Snapshot(
            elapsed=time.monotonic() - self.started,
            seeds=work.seeds,
            outcomes={status: int(stats.get_value(f"imagesearch/seeds/{status}", 0)) for status in STATUSES},
            calls=calls,
            replayed=int(stats.get_value("journal/replayed", 0)),
            known_calls=work.known_calls,
            estimated_calls=work.estimated_calls,
            seeds_not_begun=work.seeds_not_begun,
            quota=f"{quota.calls:,} per {quota.seconds:g} s" if quota is not None else None,
            waiting=pacer.waiting if pacer is not None else 0,
            ban_left=pacer.ban_left() if pacer is not None else 0.0,
            errors=errors,
            eta_seconds=eta,
            silent_seconds=silent,
            failed_attempts=failed,
            run_searches=work.run_searches,
        )

    def _record(self, snap: Snapshot) -> None:
        stats = self.crawler.stats
        if self.planned is None and getattr(self.crawler.spider, "seeds_read", True):
            self.planned = snap.calls + snap.calls_needed
            stats.set_value("progress/calls_planned", self.planned)
        stats.set_value("progress/calls_needed", snap.calls_needed)
        stats.set_value("progress/elapsed_seconds", round(snap.elapsed, 3))
        if snap.eta is not None:
            stats.set_value("progress/eta", snap.eta.isoformat(timespec="seconds"))
        self.last = snap

    def _draw(self, snap: Snapshot, ended: bool = False) -> None:
        bar = self._bar
        assert bar is not None
        bar.total = snap.calls + snap.calls_needed
        bar.n = snap.calls
        bar.set_description_str(f"seeds {snap.done:,}/{snap.seeds:,}", refresh=False)
        extra = []
        if snap.waiting:
            extra.append(f"{snap.waiting} waiting")
        if snap.ban_left > 0:
            extra.append(f"ban {duration(snap.ban_left)}")
        if snap.errors:
            extra.append(f"{snap.errors} errors")
        if self.outage_after and snap.silent_seconds >= self.outage_after:
            extra.append(f"NO ANSWER for {duration(snap.silent_seconds)}")
        if ended:
            extra.append(f"ended after {duration(snap.elapsed)}")
        elif snap.eta is not None:
            extra.append(f"ETA {snap.eta:%H:%M} UTC (in {duration(snap.eta_seconds or 0)})")
        bar.set_postfix_str(" | ".join(extra), refresh=False)
        bar.refresh()
