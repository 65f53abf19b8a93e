"""Feed exporters, storage, add-on and manifest that turn items into the partitioned Parquet/CSV datasets."""

from __future__ import annotations

from exporters.addon import DatasetAddon
from exporters.itemexporters import CsvItemExporter, ParquetItemExporter, TableItemExporter
from exporters.manifest import DatasetManifest
from exporters.storage import AtomicFileFeedStorage
from exporters.tables import TableFilter

__all__ = [
    "AtomicFileFeedStorage",
    "CsvItemExporter",
    "DatasetAddon",
    "DatasetManifest",
    "ParquetItemExporter",
    "TableFilter",
    "TableItemExporter",
]
