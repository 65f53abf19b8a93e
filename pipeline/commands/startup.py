"""Shared by ``scrapy crawl`` and ``scrapy serve`` at start-up: a start-up error is one line, no banner before it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pipeline.errors import ConfigurationError, RunLocked, RunStorageFailed

logger = logging.getLogger(__name__)

#: The logger of Scrapy's start-up banner ("Scrapy 2.19.0 started (bot: ...)", its versions, its reactor).
BANNER_LOGGER = "scrapy.utils.log"


class HeldBanner(logging.Filter):
    """Holds Scrapy's banner back from the log until the crawl has started (its spider opened).

    Scrapy logs it as the command begins, before the spider has read its arguments and the components
    their settings, so a bad argument would read as the banner followed by the error. Held, the error
    is the only line; once the spider is open the banner is logged as it was, timestamps and all.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    @classmethod
    def install(cls) -> HeldBanner:
        held = cls()
        logging.getLogger(BANNER_LOGGER).addFilter(held)
        return held

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def watch(self, crawler: Crawler) -> None:
        """Release the banner when ``crawler``'s spider opens: every start-up check has passed by then."""
        crawler.signals.connect(self.release, signal=signals.spider_opened)

    def release(self, *args: Any, **kwargs: Any) -> None:
        banner = logging.getLogger(BANNER_LOGGER)
        banner.removeFilter(self)
        records, self.records = self.records, []
        for record in records:
            banner.handle(record)

    def end(self, failed: bool, settings_level: object) -> None:
        """After the command: a start that failed drops the banner (kept at ``LOG_LEVEL=DEBUG``), else it is out."""
        if failed and str(settings_level).upper() != "DEBUG":
            logging.getLogger(BANNER_LOGGER).removeFilter(self)
            self.records = []
        self.release()


def watch_startup_errors(crawl: Any, found: list[BaseException]) -> None:
    """Take an exception that kept the crawl from starting out of its outcome into ``found``.

    A ConfigurationError is the user's to fix and says how in its message; anything else (a
    Scrapy setting of the wrong type, say) is reported in one line too, with its traceback
    logged at DEBUG for whoever needs to see where it came from.
    """

    def keep(exc: BaseException) -> None:
        found.append(exc)
        if not isinstance(exc, ConfigurationError | RunLocked | RunStorageFailed):
            logger.debug("The crawl could not start", exc_info=exc)

    def on_failure(failure: Failure) -> None:
        if failure.value is not None:
            keep(failure.value)

    if isinstance(crawl, Deferred):
        crawl.addErrback(on_failure)
    elif isinstance(crawl, asyncio.Future):
        def on_done(task: asyncio.Future[Any]) -> None:
            exc = None if task.cancelled() else task.exception()  # retrieved: asyncio will not print it
            if exc is not None:
                keep(exc)

        crawl.add_done_callback(on_done)
