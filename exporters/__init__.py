"""Parquet and CSV writers and feed exporters, atomic storage, and the dataset layout's naming rules."""

from __future__ import annotations

from exporters.itemexporters import CsvItemExporter, ParquetItemExporter, TableItemExporter
from exporters.storage import AtomicFileFeedStorage
from exporters.tables import TableFilter

__all__ = [
    "AtomicFileFeedStorage",
    "CsvItemExporter",
    "ParquetItemExporter",
    "TableFilter",
    "TableItemExporter",
]
