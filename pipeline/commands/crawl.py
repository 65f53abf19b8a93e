"""``scrapy crawl`` for this project: bad arguments and gateway refusals end in one line and a non-zero exit.

Exit codes: 0 the crawl ran to the end (seeds may still be rejected or failed: see the seeds table);
1 Scrapy could not start the crawl; 2 bad arguments or settings (ConfigurationError, before any
API call); 3 the gateway refused the crawl as a whole (an IMAGESEARCH_ERROR_ACTIONS ``fatal`` code,
finish reason ``gateway_fatal``); 4 the crawl was stopped before it finished (Ctrl-C, SIGTERM, a
CLOSESPIDER_* limit): with JOBDIR the same command resumes it, without it the run is committed
with ``"complete": false`` in its manifest.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from exporters.manifest import DatasetManifest, summary_lines
from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger(__name__)

EXIT_BOOTSTRAP_FAILED = 1
EXIT_CONFIGURATION = 2
EXIT_GATEWAY_FATAL = 3
EXIT_STOPPED = 4
#: finish_reason of a crawl a fatal gateway error stopped (set by the spider through CloseSpider).
GATEWAY_FATAL_REASON = "gateway_fatal"


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name, e.g. scrapy crawl imagesearch -a seeds=photos/")
        assert self.crawler_process
        crawler = self._create_crawler(args[0])
        configuration_errors: list[ConfigurationError] = []
        _watch_configuration_errors(self.crawler_process.crawl(crawler, **opts.spargs), configuration_errors)
        self.crawler_process.start()
        manifest = crawler.get_extension(DatasetManifest) if crawler._extensions is not None else None
        if manifest is not None and manifest.written is not None:
            print("\n".join(summary_lines(manifest.root, manifest.written)))
        if configuration_errors:
            print(f"scrapy crawl {args[0]}: error: {configuration_errors[0]}", file=sys.stderr)
            self.exitcode = EXIT_CONFIGURATION
        elif self.crawler_process.bootstrap_failed:
            self.exitcode = EXIT_BOOTSTRAP_FAILED
        elif (reason := crawler.stats.get_value("finish_reason")) == GATEWAY_FATAL_REASON:
            self.exitcode = EXIT_GATEWAY_FATAL
        elif reason not in (None, "finished"):
            if crawler.settings.get("JOBDIR"):
                advice = "run the same command again to resume it"
            else:
                advice = 'its datasets are marked "complete": false; add -s JOBDIR=DIR to make a crawl resumable'
            print(f"scrapy crawl {args[0]}: the crawl stopped before it finished ({reason}): {advice}", file=sys.stderr)
            self.exitcode = EXIT_STOPPED


def _watch_configuration_errors(crawl: Any, found: list[ConfigurationError]) -> None:
    """Take a ConfigurationError out of the crawl's outcome (so no traceback is printed) into ``found``."""

    def on_failure(failure: Failure) -> Failure | None:
        if failure.check(ConfigurationError):
            found.append(failure.value)
            return None
        return failure

    if isinstance(crawl, Deferred):
        crawl.addErrback(on_failure)
    elif isinstance(crawl, asyncio.Future):
        def on_done(task: asyncio.Future[Any]) -> None:
            exc = None if task.cancelled() else task.exception()  # retrieved: asyncio will not print it
            if isinstance(exc, ConfigurationError):
                found.append(exc)
            elif exc is not None:
                logger.critical("The crawl could not start", exc_info=exc)

        crawl.add_done_callback(on_done)
