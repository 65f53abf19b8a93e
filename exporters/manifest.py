"""Extension writing each run's manifest (files, row counts, stats) last, so importers can tell finished runs."""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured

from exporters.layout import contained, manifest_path
from exporters.storage import atomic_write_bytes

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.extensions.feedexport import FeedSlot
    from typing_extensions import Self

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
    should read manifests, not glob the tree. A crawl resumed with the same JOBDIR (same run id)
    adds its files to the run's existing manifest.
    Enabled by ``exporters.addon.DatasetAddon`` when it lays out the datasets.
    """

    def __init__(self, crawler: Crawler, root: Path, run_id: str, dt: str):
        self.crawler = crawler
        self.root = root
        self.run_id = run_id
        self.dt = dt
        self.path = manifest_path(root, run_id)
        self.files: list[dict[str, Any]] = []
        self.started_at = datetime.now(timezone.utc)

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
        self.started_at = datetime.now(timezone.utc)

    def feed_slot_closed(self, slot: FeedSlot) -> None:
        path = Path(getattr(slot.storage, "path", ""))
        if not path.is_file():
            return  # storing failed (already logged by the feed exporter), or not a local file
        try:
            relative = contained(self.root, path).relative_to(self.root.resolve())
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
        finished_at = datetime.now(timezone.utc)
        part = {
            "started_at": self.started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "finish_reason": stats.get("finish_reason"),
        }
        previous = self._previous()
        files = sorted(previous.get("files", []) + self.files, key=lambda f: f["path"])
        rows: dict[str, dict[str, int]] = {}
        for f in files:
            by_table = rows.setdefault(f["format"], {})
            by_table[f["table"]] = by_table.get(f["table"], 0) + f["rows"]
        manifest = {
            "run_id": self.run_id,
            "dt": self.dt,
            "started_at": previous.get("started_at", part["started_at"]),
            "finished_at": part["finished_at"],
            "finish_reason": part["finish_reason"],
            "parts": [*previous.get("parts", []), part],
            "rows": rows,
            "files": files,
            "stats": json_safe_stats(stats),
        }
        atomic_write_bytes(self.path, json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
        logger.info("Dataset run %s finished: manifest %s (%d files)", self.run_id, self.path, len(files))

    def _previous(self) -> dict[str, Any]:
        """The manifest an earlier part of this run (a crawl resumed from JOBDIR) wrote, if any."""
        if not self.path.is_file():
            return {}
        try:
            previous: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("Unreadable manifest %s replaced", self.path)
            return {}
        listed = {f["path"] for f in self.files}
        previous["files"] = [f for f in previous.get("files", []) if f["path"] not in listed]
        return previous
