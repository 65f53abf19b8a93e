"""``scrapy crawl`` for this project: bad arguments and gateway refusals end in one line and a non-zero exit.

Exit codes: 0 the crawl ran to the end (seeds may still be rejected or failed: see the seeds table);
1 Scrapy could not start the crawl; 2 bad arguments or settings (ConfigurationError, before any
API call); 3 the gateway refused the crawl as a whole (an IMAGESEARCH_ERROR_ACTIONS ``fatal`` code,
finish reason ``gateway_fatal``); 4 the crawl was stopped before it finished (Ctrl-C, SIGTERM, a
CLOSESPIDER_* limit, the gateway's quota for the day spent): with JOBDIR the same command resumes
it, without it the run is committed with ``"complete": false`` in its manifest; 5 another crawl
holds this JOBDIR or run id (nothing was done); 6 the run could not be written (a full disk, an
I/O error): nothing committed, JOBDIR kept, the same command resumes once the cause is fixed; 7 the
gateway never answered (refused, DNS, 404, answers not in its format): nothing committed.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from exporters.layout import INCOMPLETE_DIR
from pipeline.commands.startup import HeldBanner, watch_startup_errors
from pipeline.components.datasetrun import DatasetRun
from pipeline.errors import (
    GATEWAY_FATAL_REASON,
    GATEWAY_UNREACHABLE_REASON,
    QUOTA_SPENT_REASON,
    REDIS_UNAVAILABLE_REASON,
    SHARED_MISMATCH_REASON,
    STOP_MESSAGE_STAT,
    ConfigurationError,
    RunLocked,
    RunStorageFailed,
)
from pipeline.runs.manifest import summary_lines

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger(__name__)

EXIT_BOOTSTRAP_FAILED = 1
EXIT_CONFIGURATION = 2
EXIT_GATEWAY_FATAL = 3
EXIT_STOPPED = 4
EXIT_LOCKED = 5
EXIT_STORAGE_FAILED = 6
EXIT_GATEWAY_UNREACHABLE = 7
EXIT_CHECKS_FAILED = 8


#: The log levels ``LOG_LEVEL`` (``-s LOG_LEVEL=...`` or ``-L``) may name.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Command(ScrapyCrawlCommand):
    banner: HeldBanner | None = None

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        self.banner = HeldBanner.install()  # before Scrapy logs it: a start-up error is then the only line
        assert self.settings is not None
        # Checked here, before Scrapy configures its logging with it (a traceback otherwise).
        level = self.settings.get("LOG_LEVEL")
        if isinstance(level, int):
            return
        if (name := str(level).strip().upper()) not in LOG_LEVELS:
            command = " ".join(["scrapy crawl", *args[:1]])
            print(f"{command}: error: LOG_LEVEL={level!r} is not a log level: use one of {', '.join(LOG_LEVELS)}",
                  file=sys.stderr)
            raise SystemExit(EXIT_CONFIGURATION)
        self.settings.set("LOG_LEVEL", name, priority="cmdline")  # logging knows upper-case names only

    @staticmethod
    def _startup_failed(spider: str, error: BaseException) -> int:
        """The one line for a crawl that could not start, and its exit code."""
        if isinstance(error, ConfigurationError | RunLocked):
            print(f"scrapy crawl {spider}: error: {error}", file=sys.stderr)
            return EXIT_CONFIGURATION if isinstance(error, ConfigurationError) else EXIT_LOCKED
        if isinstance(error, RunStorageFailed):
            print(f"scrapy crawl {spider}: error: {error}; nothing was done", file=sys.stderr)
            return EXIT_STORAGE_FAILED
        print(f"scrapy crawl {spider}: error: the crawl could not start: {type(error).__name__}: {error} "
              "(-s LOG_LEVEL=DEBUG shows where)", file=sys.stderr)
        return EXIT_BOOTSTRAP_FAILED

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name, e.g. scrapy crawl imagesearch -a seeds=photos/")
        assert self.crawler_process
        crawler = self._create_crawler(args[0])
        startup_errors: list[BaseException] = []
        if self.banner is not None:
            self.banner.watch(crawler)
        watch_startup_errors(self.crawler_process.crawl(crawler, **opts.spargs), startup_errors)
        self.crawler_process.start()
        if self.banner is not None:
            self.banner.end(bool(startup_errors), crawler.settings.get("LOG_LEVEL"))
        run = crawler.get_extension(DatasetRun) if crawler._extensions is not None else None
        if run is not None and run.root is not None and run.written is not None:
            print("\n".join(summary_lines(run.root, run.written, run.report)))
        if run is not None and run.shared is not None and run.shared.lines:
            print("\n".join(run.shared.lines))
        if startup_errors:
            self.exitcode = self._startup_failed(args[0], startup_errors[0])
        elif self.crawler_process.bootstrap_failed:
            self.exitcode = EXIT_BOOTSTRAP_FAILED
        elif (failure := crawler.stats.get_value("dataset/failure")) is not None and run is not None and run.recorded:
            print(f"scrapy crawl {args[0]}: error: the run's commit was cut short ({failure}): the next crawl on "
                  f"{run.root}, or python -m pipeline.runs {run.root}, finishes it", file=sys.stderr)
            self.exitcode = EXIT_STORAGE_FAILED
        elif failure is not None:
            keep = "JOBDIR is kept: the same command resumes" if crawler.settings.get("JOBDIR") else \
                "add -s JOBDIR=DIR to make a crawl resumable"
            print(f"scrapy crawl {args[0]}: error: the run was not written ({failure}): nothing committed; "
                  f"{keep} once that is fixed", file=sys.stderr)
            self.exitcode = EXIT_STORAGE_FAILED
        elif (reason := crawler.stats.get_value("finish_reason")) == GATEWAY_FATAL_REASON:
            self.exitcode = EXIT_GATEWAY_FATAL
        elif reason == SHARED_MISMATCH_REASON:
            print(f"scrapy crawl {args[0]}: error: {crawler.stats.get_value(STOP_MESSAGE_STAT)}", file=sys.stderr)
            self.exitcode = EXIT_CONFIGURATION
        elif reason == GATEWAY_UNREACHABLE_REASON:
            print(f"scrapy crawl {args[0]}: error: {crawler.stats.get_value(STOP_MESSAGE_STAT)}", file=sys.stderr)
            self.exitcode = EXIT_GATEWAY_UNREACHABLE
        elif reason == "finished" and (failed := crawler.stats.get_value("checks/failed_fail", 0)):
            print(f"scrapy crawl {args[0]}: error: {failed} data-quality check{'s' if failed > 1 else ''} set to "
                  "fail the run failed (the lines above say which): the run is committed, marked in its manifest "
                  "and the runs table", file=sys.stderr)
            self.exitcode = EXIT_CHECKS_FAILED
        elif reason not in (None, "finished"):
            if reason in (QUOTA_SPENT_REASON, REDIS_UNAVAILABLE_REASON) and (
                    message := crawler.stats.get_value(STOP_MESSAGE_STAT)):
                advice = str(message)
            elif run is not None and run.shared is not None:
                advice = "the same command rejoins the run; the other workers take over its searches meanwhile"
            elif crawler.settings.get("JOBDIR"):
                advice = "run the same command again to resume it"
            else:
                where = f'{crawler.settings["DATASET_DIR"]}/{INCOMPLETE_DIR}/'
                advice = (f'its datasets went to {where}, marked "complete": false, apart from finished runs; '
                          "add -s JOBDIR=DIR to make a crawl resumable")
            print(f"scrapy crawl {args[0]}: the crawl stopped before it finished ({reason}): {advice}", file=sys.stderr)
            self.exitcode = EXIT_STOPPED
