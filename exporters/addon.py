"""Scrapy add-on that fixes the run id and lays out the default partitioned dataset feeds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporters.layout import batch_file_name, partition_dir, resolve_run, staging_dir
from exporters.manifest import DatasetManifest
from items.schema import TABLES
from pipeline.configuration import dataset_formats

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


class DatasetAddon:
    """Enabled in ADDONS. ``update_settings`` runs after ``-s`` options are applied, so it sees the final values.

    - resolves the run (DATASET_RUN_ID, else the one JOBDIR remembers, else a new id) and its dt
      partition, and publishes both as DATASET_RUN_ID / DATASET_RUN_DATE for pipelines and exporters;
    - unless the user gave feeds (``-o``/``-O``/FEEDS), sets FEEDS to every table in every
      DATASET_FORMATS format, a new file every DATASET_BATCH_ITEMS rows, written in the run's
      staging directory ``DATASET_DIR/_staging/<run_id>/``, and enables ``DatasetManifest``, which
      commits them to ``DATASET_DIR/<format>/<table>/dt=<date>/<run_id>-<NNNNN>.<ext>`` at the end.
    """

    def update_settings(self, settings: BaseSettings) -> None:
        run = resolve_run(settings)
        # At the priority they already have (settings.py's empty default is "project", above "addon").
        settings.set("DATASET_RUN_ID", run.run_id, priority=settings.getpriority("DATASET_RUN_ID") or "addon")
        settings.set("DATASET_RUN_DATE", run.dt, priority=settings.getpriority("DATASET_RUN_DATE") or "addon")
        if settings.getdict("FEEDS") or settings.get("FEED_URI"):
            logger.info("Dataset run %s: user feeds given, default dataset layout not used", run.run_id)
            return
        root = Path(settings["DATASET_DIR"])
        settings.set("FEEDS", dataset_feeds(settings, root, run.run_id, run.dt), priority="addon")
        settings.setdefault_in_component_priority_dict("EXTENSIONS", DatasetManifest, 500)
        logger.info("Dataset run %s: writing %s under %s", run.run_id, "+".join(dataset_formats(settings)), root)


def dataset_feeds(settings: BaseSettings, root: Path, run_id: str, dt: str) -> dict[str, dict[str, Any]]:
    """The FEEDS setting for the default layout: one feed per (format, table), in the run's staging directory."""
    formats = dataset_formats(settings)
    batch_items = settings.getint("DATASET_BATCH_ITEMS")
    feeds: dict[str, dict[str, Any]] = {}
    staging = staging_dir(root, run_id)
    for fmt in formats:
        for table in TABLES:
            directory = partition_dir(staging, fmt, table, dt).absolute()
            uri = str(directory / batch_file_name(run_id, fmt))  # Scrapy fills in %(batch_id)05d
            feeds[uri] = {
                "format": fmt,
                "item_export_kwargs": {"table": table},
                "item_filter": "exporters.tables.TableFilter",
                "batch_item_count": batch_items,
                "store_empty": True,  # every table gets a file, so readers' globs always find the schema
                "overwrite": True,
            }
    return feeds
