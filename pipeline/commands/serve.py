"""``scrapy serve``: the search-by-photo HTTP API and web page (README "Search service").

Exit codes: 0 stopped (Ctrl-C, SIGTERM); 2 bad settings or the port cannot be listened on;
1 anything else that kept it from starting.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from pipeline.commands.crawl import EXIT_BOOTSTRAP_FAILED, EXIT_CONFIGURATION
from pipeline.commands.startup import HeldBanner, watch_startup_errors
from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCommand):
    requires_project = True
    banner: HeldBanner | None = None

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        self.banner = HeldBanner.install()  # before Scrapy logs it: a start-up error is then the only line

    def syntax(self) -> str:
        return "[-s IMAGESEARCH_SERVE_PORT=6810] [-s NAME=VALUE ...]"

    def short_desc(self) -> str:
        return "Serve search by photo over HTTP (POST /search, a web page at /)"

    def long_desc(self) -> str:
        return ("Listen on IMAGESEARCH_SERVE_HOST:IMAGESEARCH_SERVE_PORT and answer POST /search (a photo as "
                "multipart 'photo', or JSON with url or image_base64; optional cat and pages) with the "
                "normalised matches, through the same gateway, signing, pacing and error table as scrapy crawl. "
                "Answers are cached for IMAGESEARCH_SERVE_CACHE_TTL seconds. GET / is a web page, GET /healthz "
                "and GET /metrics (Prometheus) report on it. Runs until Ctrl-C or SIGTERM.")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args:
            raise UsageError("scrapy serve takes no arguments: settings with -s NAME=VALUE")
        from pipeline.serve.spider import ServeSpider

        assert self.crawler_process is not None
        crawler = self.crawler_process.create_crawler(ServeSpider)
        errors: list[BaseException] = []
        if self.banner is not None:
            self.banner.watch(crawler)
        watch_startup_errors(self.crawler_process.crawl(crawler), errors)
        self.crawler_process.start()
        spider = crawler.spider
        if not errors and (startup := getattr(spider, "startup_error", None)) is not None:
            errors.append(startup)
        if self.banner is not None:
            self.banner.end(bool(errors), crawler.settings.get("LOG_LEVEL"))
        if errors:
            error = errors[0]
            if isinstance(error, ConfigurationError):
                print(f"scrapy serve: error: {error}", file=sys.stderr)
                self.exitcode = EXIT_CONFIGURATION
            else:
                print(f"scrapy serve: error: the service could not start: {type(error).__name__}: {error}",
                      file=sys.stderr)
                self.exitcode = EXIT_BOOTSTRAP_FAILED
        elif self.crawler_process.bootstrap_failed:
            self.exitcode = EXIT_BOOTSTRAP_FAILED
