"""Alerts at the end of a run: its summary posted to each IMAGESEARCH_ALERT_URLS webhook (pipeline/alerts.py
speaks Slack-compatible, DingTalk, Feishu/Lark and WeCom) for the outcomes IMAGESEARCH_ALERT_ON names.

Posted when the engine has stopped (the run committed, its report written), from a thread, within
IMAGESEARCH_ALERT_DEADLINE seconds whatever the webhooks do: a webhook that is down is retried
IMAGESEARCH_ALERT_RETRIES times and said in a warning, and never changes the run or its exit. The URLs'
secrets (tokens, keys, signing secrets) are masked in every log line (SecretRedaction) and reach no stat,
manifest or report. Stats: ``alerts/sent``, ``alerts/failed``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from pipeline.alerts import RunSummary, alert_outcomes, parse_urls, send
from pipeline.components.datasetrun import DatasetRun
from pipeline.errors import GATEWAY_FATAL_REASON, GATEWAY_UNREACHABLE_REASON, SHARED_MISMATCH_REASON

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred

    from pipeline.alerts import Outcome

logger = logging.getLogger(__name__)

#: Finish reasons of a run that failed rather than stopped (nothing to resume: something to fix).
FAILED_REASONS = frozenset({GATEWAY_FATAL_REASON, GATEWAY_UNREACHABLE_REASON, SHARED_MISMATCH_REASON})


class RunAlerts:
    """Posts the run's summary to the alert webhooks once the engine has stopped."""

    def __init__(self, crawler: Crawler, urls: list[str], outcomes: list[str]) -> None:
        self.crawler, self.urls, self.outcomes = crawler, urls, outcomes
        settings = crawler.settings
        self.timeout = settings.getfloat("IMAGESEARCH_ALERT_TIMEOUT", 5.0)
        self.retries = settings.getint("IMAGESEARCH_ALERT_RETRIES", 2)
        self.deadline = settings.getfloat("IMAGESEARCH_ALERT_DEADLINE", 8.0)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        urls = parse_urls(crawler.settings.get("IMAGESEARCH_ALERT_URLS"))
        if not urls:
            raise NotConfigured("no IMAGESEARCH_ALERT_URLS")
        extension = cls(crawler, urls, alert_outcomes(crawler.settings.get("IMAGESEARCH_ALERT_ON")))
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    def outcome(self) -> str:
        """finished, checks_failed, stopped or failed: how the run ended."""
        stats = self.crawler.stats
        reason = stats.get_value("finish_reason")
        run = self.crawler.get_extension(DatasetRun)
        if stats.get_value("dataset/failure") is not None or reason in FAILED_REASONS:
            return "failed"
        if reason != "finished" or (run is not None and run.root is not None and run.written is None):
            return "stopped"
        return "checks_failed" if stats.get_value("checks/failed", 0) else "finished"

    def summary(self, outcome: str) -> RunSummary:
        stats = self.crawler.stats
        run = self.crawler.get_extension(DatasetRun)
        manifest: dict[str, Any] = (run.written if run is not None else None) or {}
        rows: dict[str, int] = next(iter((manifest.get("rows") or {}).values()), {})
        seeds = {status: int(stats.get_value(f"imagesearch/seeds/{status}", 0) or 0)
                 for status in ("ok", "rejected", "failed", "unfinished")}
        failed = tuple(check["line"] for check in manifest.get("checks", ()) if not check["passed"])
        reason = str(stats.get_value("dataset/failure") or stats.get_value("finish_reason") or "")
        return RunSummary(
            run_id=run.run.run_id if run is not None else "", outcome=outcome,
            dataset=str(run.root) if run is not None and run.root is not None else "",
            seeds_ok=seeds["ok"], seeds_total=sum(seeds.values()), products=int(rows.get("products", 0)),
            matches=int(rows.get("matches", 0)), calls=int(stats.get_value("imagesearch/calls", 0) or 0),
            checks_failed=failed, report=str(run.report) if run is not None and run.report else None,
            reason="" if reason == "finished" else reason,
        )

    async def engine_stopped(self) -> None:
        outcome = self.outcome()
        if outcome not in self.outcomes:
            return
        posting: Deferred[list[Outcome]] = deferToThread(send, self.urls, self.summary(outcome), timeout=self.timeout,
                                                         retries=self.retries, deadline=self.deadline)
        for result in await maybe_deferred_to_future(posting):  # pipeline.alerts logs each, and why one failed
            self.crawler.stats.inc_value("alerts/sent" if result.ok else "alerts/failed")
