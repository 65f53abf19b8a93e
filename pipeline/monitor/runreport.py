"""The extension that writes a run's report once the crawl has committed it (pipeline.monitor.report)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.exceptions import NotConfigured

from pipeline.errors import run_committed

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class RunReport:
    """The run's visual report (REPORT_ENABLED), written from the datasets a crawl just committed (the
    ``run_committed`` signal of pipeline.components.datasetrun.DatasetRun). The data is committed whatever
    happens here: a report that fails is said in one line, and the crawl's exit stays what the data says
    (``scrapy report RUN_ID`` writes it again)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RunReport:
        if not crawler.settings.getbool("REPORT_ENABLED"):
            raise NotConfigured("REPORT_ENABLED is off")
        extension = cls(crawler)
        crawler.signals.connect(extension.run_committed, signal=run_committed)
        return extension

    def run_committed(self, root: Path, run_id: str) -> Path | None:
        from pipeline.monitor.report import ReportError, write_report  # DuckDB: at the commit, not at every start

        settings = self.crawler.settings
        try:
            report = write_report(root, run_id, top=settings.getint("REPORT_TOP_MATCHES"),
                                  page_seeds=settings.getint("REPORT_PAGE_SEEDS"))
        except (ReportError, OSError) as exc:
            logger.error("The run's report was not written (%s): its data is committed; scrapy report %s "
                         "writes the report again", exc, run_id)
            self.crawler.stats.set_value("report/failure", str(exc))
            return None
        logger.info("Report of run %s: %s", run_id, report)
        return report
