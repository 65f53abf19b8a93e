"""Extension writing each run's manifest (files, row counts, stats) last, so importers can tell finished runs."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.job import job_dir

from exporters.layout import FORMAT_EXTENSIONS, contained, forget_finished_run, manifest_path, run_files, staging_dir
from exporters.storage import atomic_write_bytes, fsync_dir
from items.schema import TABLES

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.extensions.feedexport import FeedSlot

logger = logging.getLogger(__name__)

#: Stats whose key matches are left out of the manifest: it is shared with BI tooling.
SECRET_KEY_RE = re.compile(r"secret|sign|passw|token|credential|app_?key|session", re.IGNORECASE)


def json_safe_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Crawl stats as JSON values (datetimes as ISO 8601), without keys that may carry secrets."""
    safe: dict[str, Any] = {}
    for key, value in sorted(stats.items()):
        if SECRET_KEY_RE.search(str(key)):
            continue
        if isinstance(value, (datetime, date)):
            value = value.isoformat()
        elif not isinstance(value, (str, int, float, bool, type(None))):
            value = str(value)
        safe[str(key)] = value
    return safe


class DatasetManifest:
    """Records every dataset file the feeds store, then writes ``DATASET_DIR/_manifests/<run_id>.json``.

    The manifest is written atomically after the feed exporter has stored every file, so its
    presence means the run is finished and every file it lists is complete. A scheduled import
    should read manifests, not glob the tree. A crawl that runs the same run id again (resumed
    from JOBDIR, which replays the journaled answers, or DATASET_RUN_ID reused) rewrites the run:
    its files replace the earlier ones, leftovers are removed, and its manifest replaces the old.
    Enabled by ``exporters.addon.DatasetAddon`` when it lays out the datasets.
    """

    def __init__(self, crawler: Crawler, root: Path, run_id: str, dt: str):
        self.crawler = crawler
        self.root = root
        self.run_id = run_id
        self.dt = dt
        self.path = manifest_path(root, run_id)
        self.staging = staging_dir(root, run_id)
        # A part of this run killed before its commit left staged files: this crawl rewrites them all.
        shutil.rmtree(self.staging, ignore_errors=True)
        self.files: list[dict[str, Any]] = []
        self.started_at = datetime.now(UTC)
        #: The manifest once written (the run is committed), for the crawl command's summary.
        self.written: dict[str, Any] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        run_id = settings.get("DATASET_RUN_ID")
        if not run_id or not settings.get("DATASET_RUN_DATE"):
            raise NotConfigured("DatasetManifest needs DATASET_RUN_ID and DATASET_RUN_DATE (set by DatasetAddon)")
        ext = cls(crawler, Path(settings["DATASET_DIR"]), run_id, settings["DATASET_RUN_DATE"])
        crawler.signals.connect(ext.spider_opened, signals.spider_opened)
        crawler.signals.connect(ext.feed_slot_closed, signals.feed_slot_closed)
        crawler.signals.connect(ext.feed_exporter_closed, signals.feed_exporter_closed)
        return ext

    def spider_opened(self) -> None:
        self.started_at = datetime.now(UTC)

    def feed_slot_closed(self, slot: FeedSlot) -> None:
        path = Path(getattr(slot.storage, "path", ""))
        if not path.is_file():
            return  # storing failed (already logged by the feed exporter), or not a local file
        try:
            relative = contained(self.staging, path).relative_to(self.staging.resolve())
        except ValueError:
            return  # a user feed outside the dataset tree
        options = slot.feed_options.get("item_export_kwargs") or {}
        self.files.append(
            {
                "path": relative.as_posix(),
                "format": slot.format,
                "table": options.get("table"),
                "rows": getattr(slot.exporter, "rows_written", slot.itemcount),
                "bytes": path.stat().st_size,
            }
        )

    def feed_exporter_closed(self) -> None:
        stats = self.crawler.stats.get_stats()
        reason = stats.get("finish_reason")
        jobdir = job_dir(self.crawler.settings)
        if jobdir and reason != "finished":
            logger.warning(
                "Dataset run %s stopped (%s) before it finished: nothing committed. "
                "Run the same command again to resume it from %s", self.run_id, reason, jobdir,
            )
            return
        if reason != "finished":
            logger.warning(
                "Dataset run %s stopped (%s) before it finished: committing what it has, marked \"complete\": false "
                "in its manifest (with -s JOBDIR=DIR a stopped run is resumable instead)", self.run_id, reason,
            )
        files = sorted(self.files, key=lambda f: f["path"])
        self._commit(files)
        rows: dict[str, dict[str, int]] = {}
        for f in files:
            by_table = rows.setdefault(f["format"], {})
            by_table[f["table"]] = by_table.get(f["table"], 0) + f["rows"]
        manifest = {
            "run_id": self.run_id,
            "dt": self.dt,
            # Which API answered, and where (a host, never a URL: no credentials can ride along).
            "gateway": stats.get("imagesearch/gateway"),
            "endpoint_host": stats.get("imagesearch/endpoint_host"),
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "finish_reason": reason,
            "complete": reason == "finished",
            "rows": rows,
            "files": files,
            "stats": json_safe_stats(stats),
        }
        atomic_write_bytes(self.path, json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
        self.written = manifest
        logger.info("Dataset run %s finished: manifest %s (%d files)", self.run_id, self.path, len(files))
        # After the manifest, which no longer lists them: an importer never meets a listed file missing.
        self._remove_leftovers({f["path"] for f in files})
        shutil.rmtree(self.staging, ignore_errors=True)
        if jobdir:
            forget_finished_run(jobdir)

    def _commit(self, files: list[dict[str, Any]]) -> None:
        """Move the staged files to their final names, each by one atomic rename, made durable."""
        directories: set[Path] = set()
        for f in files:
            final = self.root / f["path"]
            contained(self.root, final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / f["path"], final)
            directories.add(final.parent)
        for directory in directories:
            fsync_dir(directory)

    def _remove_leftovers(self, written: set[str]) -> None:
        """Delete this run's files that this crawl did not write: an earlier attempt at the same run
        (a crawl resumed from JOBDIR, or DATASET_RUN_ID reused) wrote more batches than this one."""
        root = self.root.resolve()
        for path in run_files(self.root, self.run_id):
            if contained(self.root, path).relative_to(root).as_posix() not in written:
                path.unlink(missing_ok=True)
                logger.info("Removed %s: left over from an earlier attempt at run %s", path, self.run_id)


def summary_lines(root: Path, manifest: dict[str, Any]) -> list[str]:
    """What a person reads at the end of a crawl: where each table went, its rows, and how the seeds fared."""
    state = "complete" if manifest["complete"] else f"INCOMPLETE, {manifest['finish_reason']}"
    lines = [f"Datasets of run {manifest['run_id']} ({state}) under {root}/:"]
    formats = [fmt for fmt in FORMAT_EXTENSIONS if fmt in manifest["rows"]]
    stats = manifest["stats"]
    for table in TABLES:
        rows = manifest["rows"][formats[0]].get(table, 0) if formats else 0
        where = "  ".join(f"{fmt}/{table}/dt={manifest['dt']}/" for fmt in formats)
        line = f"  {table:<8} {rows:>9,} rows  {where}"
        if table == "seeds":
            outcomes = (f"{stats.get(f'imagesearch/seeds/{s}', 0):,} {s}" for s in ("ok", "rejected", "failed"))
            line += "  (" + ", ".join(outcomes) + ")"
        lines.append(line)
    lines.append(f"  manifest: {manifest_path(root, manifest['run_id'])}")
    return lines
