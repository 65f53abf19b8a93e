"""Staging: every hit (the ``hits`` table: the match and its listing, normalised) and every seed outcome goes
to Parquet files in ``DATASET_DIR/_staging/<run_id>/`` as the crawl scrapes them (a shared run's worker:
part files of its own). A write that fails (a full disk) fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from exporters.storage import fsync_dir
from exporters.tables import TableConverter
from items.schema import HITS, SEEDS, STAGED_SEEDS, Table

#: Rows a staging writer holds before it writes them as a row group: small, so that what a crawl
#: holds does not depend on its size (1,000 hits are 50 pages of 20; a row group every few minutes
#: at a real key's pace). The published files' row groups are PARQUET_ROW_GROUP_SIZE.
STAGE_ROWS = 1_000
#: The staged tables, by name: what a crawl stages and a commit builds the published tables from.
STAGED_TABLES: dict[str, Table] = {HITS.name: HITS, SEEDS.name: STAGED_SEEDS}


class _StageBuffer:
    """Rows of one staged table, buffered ``buffer_rows`` at a time, then written by ``_write``."""

    def __init__(self, path: Path, table: Table, buffer_rows: int) -> None:
        self.path = path
        self.table = table
        self.buffer_rows = buffer_rows
        self.converter = TableConverter(table)
        self.rows: list[tuple[Any, ...]] = []
        self.rows_written = 0
        self.rejected = 0

    def add(self, item: Any) -> None:
        self.rows.append(self.converter.row(item))
        if len(self.rows) >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            batch, rejected = self.converter.to_batch(rows)
            self.rejected += rejected
            self._write(batch)
            self.rows_written += batch.num_rows

    def _write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError


class StagedTable(_StageBuffer):
    """One staged table: rows buffered, then written as row groups of one Parquet file."""

    def __init__(self, path: Path, table: Table, buffer_rows: int) -> None:
        super().__init__(path, table, buffer_rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(path, table.arrow_schema, compression="zstd")

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        try:
            self.flush()
            self._writer.close()
        finally:
            self._writer.is_open = False  # one whose close failed is not closed again when it is collected


class PartStage(_StageBuffer):
    """A staged table of a shared run's worker: each flush writes one whole Parquet part file
    (``<table>-<NNNNN>.parquet`` in ``directory``, written under a temporary name, fsynced, renamed), so
    what was flushed survives the worker's death, a SIGKILL too. Numbering goes on after the parts
    already there (a restarted worker keeps its earlier parts)."""

    def __init__(self, directory: Path, table: Table, name: str, buffer_rows: int) -> None:
        super().__init__(directory, table, buffer_rows)
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.stem.rsplit("-", 1)[1]) for p in directory.glob(f"{name}-*.parquet")
                   if p.stem.rsplit("-", 1)[1].isdigit()]
        self._number = max(numbers, default=0)

    def _write(self, batch: pa.RecordBatch) -> None:
        self._number += 1
        path = self.path / f"{self.name}-{self._number:05d}.parquet"
        temporary = path.with_name(f".{path.name}.tmp")
        pq.write_table(pa.Table.from_batches([batch], schema=self.table.arrow_schema), temporary, compression="zstd")
        with temporary.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
        fsync_dir(self.path)

    def close(self) -> None:
        self.flush()


def seed_statuses(staging: Path) -> dict[str, int]:
    """How many staged seeds have each status."""
    path = staging / f"{SEEDS.name}.parquet"
    if not path.exists():
        return {}
    statuses: list[str | None] = pq.read_table(path, columns=["status"]).column("status").to_pylist()
    counts: dict[str, int] = {}
    for status in statuses:
        if status is not None:
            counts[status] = counts.get(status, 0) + 1
    return counts

