"""``scrapy report RUN_ID|latest [-o FILE]``: write the visual report of a committed run again, from its datasets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from pipeline.configuration import whole_number
from pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    import argparse

EXIT_BAD_REQUEST = 2


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "RUN_ID|latest [-o FILE]"

    def short_desc(self) -> str:
        return "Write the visual report of a committed run from its datasets"

    def long_desc(self) -> str:
        return ("Write DATASET_DIR/_reports/RUN_ID.html (or FILE) for a run committed under DATASET_DIR "
                "(-s DATASET_DIR=... for another one); 'latest' is the run committed last. The same report "
                "a crawl writes at its commit (REPORT_TOP_MATCHES, REPORT_PAGE_SEEDS apply).")

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give one run id (or latest), e.g. scrapy report 20261125T101500Z-3fa2c1")
        from pipeline.monitor.report import (  # DuckDB: not at every scrapy start
            ReportError,
            latest_run_id,
            write_report,
        )

        assert self.settings is not None
        root = Path(self.settings["DATASET_DIR"])
        try:
            top = whole_number("REPORT_TOP_MATCHES", self.settings.get("REPORT_TOP_MATCHES"), 1)
            page_seeds = whole_number("REPORT_PAGE_SEEDS", self.settings.get("REPORT_PAGE_SEEDS"), 1)
            run_id = latest_run_id(root) if args[0] == "latest" else args[0]
            path = write_report(root, run_id, top=top, page_seeds=page_seeds,
                                out=Path(opts.output) if opts.output else None)
        except (ReportError, ConfigurationError) as exc:
            print(f"scrapy report: error: {exc}", file=sys.stderr)
            self.exitcode = EXIT_BAD_REQUEST
            return
        except OSError as exc:
            print(f"scrapy report: error: cannot write the report: {exc}", file=sys.stderr)
            self.exitcode = EXIT_BAD_REQUEST
            return
        print(path)
