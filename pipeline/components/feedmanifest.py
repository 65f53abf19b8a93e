"""A manifest beside each feed file of the user's own (``-o``/``-O``/FEEDS), as the dataset layout has its own.

A crawl with feeds writes no dataset layout and so no ``DATASET_DIR/_manifests/<run_id>.json``; a
scheduled job that loads ``out.parquet`` still needs to know which run wrote it, how many rows it
holds and whether that run finished. So each local feed file ``out.parquet`` gets
``out.parquet.manifest.json`` beside it, written (atomically) once the crawl has ended and every
feed is stored::

    {"run_id": "20261125T101500Z-3fa2c1", "dt": "2026-11-25", "path": "/srv/out/out.parquet",
     "format": "parquet", "table": "hits", "rows": 480, "bytes": 61234, "appended": false,
     "complete": true, "finish_reason": "finished", "started_at": ..., "finished_at": ...,
     "gateway": "top", "endpoint_host": "127.0.0.1:8765", "calls": {"spent": 24, ...}}

``rows`` are the rows this crawl wrote to the file (``appended``: with ``-o``, added to what it held);
``complete`` is true when the crawl finished and the file was stored. A feed to a remote URI
(``s3://``, ``ftp://``) gets no manifest (one INFO line says so). A feed that could not be
stored, or whose manifest could not be written, fails the run (exit 6): its data is not all there.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.extensions.feedexport import FeedSlot, FileFeedStorage

from exporters.itemexporters import TableItemExporter
from exporters.storage import AtomicFileFeedStorage, atomic_write_bytes
from pipeline.components.datasetrun import DatasetRun
from pipeline.errors import storage_message
from pipeline.runs.manifest import call_summary

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

#: The manifest of feed file ``out.parquet`` is ``out.parquet`` + this.
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(feed: Path) -> Path:
    return feed.with_name(feed.name + MANIFEST_SUFFIX)


class FeedManifest:
    """Enabled in EXTENSIONS, on when feeds are given: collects each stored feed file
    (``feed_slot_closed``) and writes its manifest when the engine has stopped (every feed closed)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.run_id = str(settings.get("DATASET_RUN_ID"))
        self.dt = str(settings.get("DATASET_RUN_DATE"))
        self.started_at = datetime.now(UTC)
        self.reason: str | None = None
        self.slots: list[FeedSlot] = []
        #: The manifests written, by feed path.
        self.written: dict[Path, dict[str, Any]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FeedManifest:
        if not (crawler.settings.getdict("FEEDS") or crawler.settings.get("FEED_URI")):
            raise NotConfigured("no feeds of the user's own: the dataset layout has its manifest")
        extension = cls(crawler)
        crawler.signals.connect(extension.feed_slot_closed, signal=signals.feed_slot_closed)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    def feed_slot_closed(self, slot: FeedSlot) -> None:
        self.slots.append(slot)

    def spider_closed(self, reason: str) -> None:
        self.reason = reason
        run = self.crawler.get_extension(DatasetRun)
        if run is not None:  # a resumed run (JOBDIR) started when it first did
            self.started_at = run.run.started_at

    def engine_stopped(self) -> None:
        if self.reason is None:  # the spider never opened: no feed was written
            return
        finished_at = datetime.now(UTC)
        stats = self.crawler.stats.get_stats()
        for slot in self.slots:
            if not isinstance(slot.storage, FileFeedStorage):
                logger.info("No manifest for feed %s: manifests are written beside local files only", slot.uri)
                continue
            path = Path(slot.storage.path).absolute()
            manifest = self._manifest(slot, path, stats, finished_at)
            if not path.exists():
                self._failed(f"the {slot.format} feed {path} was not stored (the log says why)")
                continue
            try:
                atomic_write_bytes(manifest_path(path), (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
            except OSError as exc:
                self._failed(storage_message(exc, manifest_path(path)))
                continue
            self.written[path] = manifest
            logger.info("Feed manifest: %s (%d rows of run %s)", manifest_path(path), manifest["rows"], self.run_id)

    def _manifest(self, slot: FeedSlot, path: Path, stats: dict[str, Any], finished_at: datetime) -> dict[str, Any]:
        exporter = slot.exporter
        table = exporter.table.name if isinstance(exporter, TableItemExporter) else None
        rows = exporter.rows_written if isinstance(exporter, TableItemExporter) else slot.itemcount
        stored = path.exists()
        return {
            "run_id": self.run_id,
            "dt": self.dt,
            "path": str(path),
            "format": slot.format,
            "table": table,
            "rows": rows,
            "bytes": path.stat().st_size if stored else None,
            "batch_id": slot.batch_id,
            "appended": slot.storage.appended if isinstance(slot.storage, AtomicFileFeedStorage) else (
                isinstance(slot.storage, FileFeedStorage) and slot.storage.write_mode == "ab"),
            "complete": self.reason == "finished" and stored and stats.get("dataset/failure") is None,
            "finish_reason": self.reason,
            "started_at": self.started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "gateway": stats.get("imagesearch/gateway"),
            "endpoint_host": stats.get("imagesearch/endpoint_host"),
            "calls": call_summary(stats),
        }

    def _failed(self, message: str) -> None:
        logger.error("%s", message)
        if self.crawler.stats.get_value("dataset/failure") is None:
            self.crawler.stats.set_value("dataset/failure", message)
