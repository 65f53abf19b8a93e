"""A dataset run, start to finish, in one place: identity, locks, staged rows, the tables built from them, commit.

Every other component asks the run (the ``DatasetRun`` extension) rather than building a path of it.

- **Identity.** ``resolve_run``: DATASET_RUN_ID, else the run JOBDIR remembers, else a new
  sortable id; its ``dt`` partition is its UTC start date unless DATASET_RUN_DATE says otherwise.
- **Locks.** A run id, and a JOBDIR, are each held by one crawl at a time: an OS file lock
  (``fcntl.flock``), which the kernel releases when the process dies, so a SIGKILL leaves no stale
  lock. A second crawl stops before any call (``RunLocked``, exit 5), naming the holder's pid.
- **Staging.** Every hit (the ``hits`` table: the match and its listing, normalised) and every
  seed outcome goes to Parquet files in ``DATASET_DIR/_staging/<run_id>/`` as the crawl scrapes
  them. A write that fails (a full disk) fails the run: finish reason ``storage_failed``, exit 6,
  nothing committed, JOBDIR kept for the resume.
- **Commit.** When the crawl has finished (or stopped without JOBDIR: committed ``"complete":
  false`` under ``DATASET_DIR/_incomplete/``, apart from the finished runs readers glob; every
  seed still without a row gets an ``unfinished`` one first), ``products`` (one row per num_iid:
  the first seed in the order given wins, then the best position), ``matches`` and ``seeds`` are
  built from the staged rows by DuckDB, out of core, and written in every DATASET_FORMATS format
  beside the staging, with the manifest; every directory they go to is made. Only then is the
  commit record (every rename to make) written and fsynced: what follows needs no space, only
  renames into the format trees, then the manifest's, then the cleanup. A commit killed half-way
  is finished by the next crawl that starts in the same DATASET_DIR, before it does anything else
  (``finish_interrupted_commits``; ``python -m pipeline.run DATASET_DIR`` does it on its own),
  which also removes the staging a crawl killed before its commit left behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.job import job_dir

from exporters.itemexporters import TableWriter, table_writer
from exporters.layout import (
    FORMAT_EXTENSIONS,
    INCOMPLETE_DIR,
    STATE_DIR,
    batch_file_name,
    contained,
    new_run_id,
    partition_dir,
    run_files,
    safe_component,
    safe_date,
    snapshot_file,
)
from exporters.storage import atomic_write_bytes, fsync_dir
from exporters.tables import TableConverter
from items.schema import HITS, MATCHES, PRODUCTS, PRODUCTS_LATEST, RUNS, SEEDS, STAGED_SEEDS, TABLES, Table
from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.configuration import csv_dialect, dataset_formats
from pipeline.errors import (
    GATEWAY_UNREACHABLE_REASON,
    STORAGE_FAILED_REASON,
    ConfigurationError,
    RunLocked,
    RunStorageFailed,
)
from pipeline.progress import error_count
from pipeline.shared import SHARED_MARKER, WORKERS_DIR, SharedRunUnavailable, SharedWorker, default_worker_name

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

#: Where a crawl's JOBDIR remembers its run, so a resumed crawl writes to the same run.
RUN_STATE_FILE = "dataset_run.json"
#: The lock of a JOBDIR, held by the crawl that uses it.
JOBDIR_LOCK_FILE = "crawl.lock"
MANIFEST_DIR = "_manifests"
#: Where a run stages its rows and builds its files until it commits them; no reader's glob reaches it.
STAGING_DIR = "_staging"
#: The locks of the run ids, one file each.
LOCK_DIR = "_locks"
#: Written, fsynced, just before a commit's renames: what is still to do if the commit is cut short.
COMMIT_RECORD = "commit.json"
#: Rows a staging writer holds before it writes them as a row group: small, so that what a crawl
#: holds does not depend on its size (1,000 hits are 50 pages of 20; a row group every few minutes
#: at a real key's pace). The published files' row groups are PARQUET_ROW_GROUP_SIZE.
STAGE_ROWS = 1_000
#: Memory DuckDB may use to build the tables before it spills to the staging directory. At 1,000,000
#: staged hits (bench_commit.py) 256 MB took the time 512 MB did, and peaked 150 MB lower.
COMMIT_MEMORY_LIMIT = "256MB"
#: Rows per batch read back from DuckDB while the tables are written.
_COMMIT_BATCH_ROWS = 65_536
_STAGED: dict[str, Table] = {HITS.name: HITS, SEEDS.name: STAGED_SEEDS}


# -- identity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """The identity of one crawl run: its id, when it started and its dt partition."""

    run_id: str
    started_at: datetime
    dt: str


def resolve_run(settings: BaseSettings, now: datetime | None = None) -> RunInfo:
    """The run this crawl writes: DATASET_RUN_ID if set, else the one JOBDIR remembers, else a new one.

    With JOBDIR the run is remembered in ``JOBDIR/dataset_run.json`` (written by ``remember``, once
    the crawl holds the JOBDIR), so a crawl resumed from the same JOBDIR keeps its run id and dt
    partition. The resumed crawl replays the journaled answers, so it rewrites the whole run. A run
    id committed before (its manifest in DATASET_DIR) keeps the dt it was committed under when it
    is run again, on whatever day, unless DATASET_RUN_DATE says otherwise.
    """
    now = now or datetime.now(UTC)
    explicit = settings.get("DATASET_RUN_ID") or None
    state = _remembered(settings.get("JOBDIR"))
    if explicit and state and explicit != state.get("run_id"):
        logger.warning("DATASET_RUN_ID=%s overrides run %s remembered in JOBDIR", explicit, state.get("run_id"))
        state = {}
    run_id = safe_component(explicit or state.get("run_id") or new_run_id(now), "run id")
    started_at = datetime.fromisoformat(state["started_at"]) if state.get("started_at") else now
    committed = _committed_dt(settings.get("DATASET_DIR"), run_id) if explicit else None
    dt = safe_date(settings.get("DATASET_RUN_DATE") or state.get("dt") or committed
                   or started_at.astimezone(UTC).date())
    return RunInfo(run_id, started_at, dt)


def _committed_dt(root: str | None, run_id: str) -> str | None:
    """The dt partition run ``run_id`` was committed under in ``root``, if it was."""
    try:
        manifest = json.loads(manifest_path(Path(root), run_id).read_text(encoding="utf-8")) if root else {}
    except (OSError, ValueError):
        return None
    dt = manifest.get("dt") if isinstance(manifest, dict) else None
    return dt if isinstance(dt, str) else None


def _remembered(jobdir: str | None) -> dict[str, str]:
    path = Path(jobdir) / RUN_STATE_FILE if jobdir else None
    if path is None or not path.is_file():
        return {}
    state: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return state


def remember(jobdir: str | Path, run: RunInfo, worker: str | None = None) -> None:
    """Write the run (and the shared run's worker name) into JOBDIR, for a crawl that resumes it."""
    state = {"run_id": run.run_id, "started_at": run.started_at.isoformat(), "dt": run.dt}
    if worker:
        state["worker"] = worker
    if _remembered(str(jobdir)) != state:  # a resumed run writes nothing (a full disk may have room for no more)
        atomic_write_bytes(Path(jobdir) / RUN_STATE_FILE, json.dumps(state).encode("utf-8"))


def forget_finished_run(jobdir: str | Path) -> None:
    """Clear JOBDIR of a run that is finished and committed: the next crawl with it starts a new run."""
    from pipeline.journal import JOURNAL_FILE  # the gateway journal: answers of the finished run

    for name in (JOURNAL_FILE, RUN_STATE_FILE):
        (Path(jobdir) / name).unlink(missing_ok=True)


def staging_dir(root: Path, run_id: str) -> Path:
    """``root/_staging/<run_id>``: a run's staged rows and built files until it commits them."""
    return root / STAGING_DIR / safe_component(run_id, "run id")


def manifest_path(root: Path, run_id: str) -> Path:
    """``root/_manifests/<run_id>.json``: beside the format trees, so no reader's glob meets it."""
    return root / MANIFEST_DIR / f"{safe_component(run_id, 'run id')}.json"


# -- locks -------------------------------------------------------------------------------------


class RunLock:
    """An exclusive OS lock on ``path`` for the life of this process, holding the holder's pid."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._file: IO[str] | None = None

    def acquire(self, wait: bool = False) -> None:
        """Take the lock, or raise RunLocked naming the process that holds it (``wait``: wait for it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise RunLocked(
                f"{self.what} is in use by another crawl (pid {holder}): wait for it to end, or give this crawl "
                "another JOBDIR or DATASET_RUN_ID"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None


def run_lock(root: Path, run_id: str) -> RunLock:
    return RunLock(root / LOCK_DIR / f"{safe_component(run_id, 'run id')}.lock", f"run {run_id} of {root}")


@contextlib.contextmanager
def snapshots_locked(root: Path) -> Iterator[None]:
    """Hold the lock of ``root``'s snapshots (products_latest), waiting for it: from reading the one a
    commit updates to moving in the new one, so that two runs committing at once never lose each other's."""
    lock = RunLock(root / LOCK_DIR / "snapshots.lock", f"the snapshots of {root}")
    lock.acquire(wait=True)
    try:
        yield
    finally:
        lock.release()


# -- staging -----------------------------------------------------------------------------------


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


# -- building and committing -------------------------------------------------------------------


def _conform(batch: pa.RecordBatch, table: Table) -> pa.RecordBatch:
    """A batch DuckDB gave back, in ``table``'s exact schema (column order, types, UTC)."""
    schema = table.arrow_schema
    arrays = [batch.column(field.name).cast(field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


#: How each published table is built from the staged ones (``hits``, ``seeds``), in DuckDB's SQL.
_TABLE_QUERIES: dict[str, str] = {
    PRODUCTS.name: (
        "SELECT *, seed_id AS first_seed_id FROM read_parquet($hits) "
        "QUALIFY row_number() OVER (PARTITION BY num_iid ORDER BY seed_rank, position, page) = 1 "
        "ORDER BY num_iid"
    ),
    MATCHES.name: "SELECT * FROM read_parquet($hits) ORDER BY seed_rank, position, page, num_iid",
    SEEDS.name: "SELECT * FROM read_parquet($seeds) ORDER BY seed_rank, seed_id",
}


class _TableFiles:
    """The files of one table in every format, started anew every ``batch_items`` rows (0: one file)."""

    def __init__(self, out: Path, table: Table, run: RunInfo, formats: list[str], batch_items: int,
                 compression: str, prefix: Path, csv_dialect: str = "standard") -> None:
        self.out, self.table, self.run, self.prefix = out, table, run, prefix
        self.csv_dialect = csv_dialect
        self.formats, self.batch_items, self.compression = formats, batch_items, compression
        self.files: list[dict[str, Any]] = []
        self._open: list[tuple[TableWriter, IO[bytes], Path, str, str]] = []
        self._rows_in_file = 0
        self._number = 0

    def _start(self) -> None:
        self._number += 1
        for fmt in self.formats:
            relative = partition_dir(self.prefix, fmt, self.table.name, self.run.dt) / batch_file_name(
                self.run.run_id, fmt, self._number
            )
            path = self.out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("wb")
            writer = table_writer(fmt, file, self.table, self.compression, csv_dialect=self.csv_dialect)
            self._open.append((writer, file, path, relative.as_posix(), fmt))
        self._rows_in_file = 0

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if not self._open:
                self._start()
            room = self.batch_items - self._rows_in_file if self.batch_items else batch.num_rows
            part, batch = batch.slice(0, room), batch.slice(room)
            for writer, *_ in self._open:
                writer.write(part)
            self._rows_in_file += part.num_rows
            if self.batch_items and self._rows_in_file >= self.batch_items:
                self.close()

    def write_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Every batch, then ``close``; the files in progress given up if a write fails."""
        try:
            for batch in batches:
                self.write(_conform(batch, self.table))
            self.close()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Give up the files in progress after a failed write."""
        for writer, file, *_ in self._open:
            writer.abandon()
            with contextlib.suppress(OSError):
                file.close()
        self._open = []

    def close(self) -> None:
        """End the files in progress, durably; every table has a file, an empty one too."""
        if not self._open and not self.files:
            self._start()
        for writer, file, path, relative, fmt in self._open:
            writer.close()
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self.files.append({"path": relative, "format": fmt, "table": self.table.name,
                               "rows": writer.rows_written, "bytes": path.stat().st_size})
        self._open = []


@contextlib.contextmanager
def _database(staging: Path) -> Iterator[Any]:
    """A DuckDB connection for building a run's tables: bounded memory, spilling into the staging, UTC."""
    import duckdb

    with contextlib.closing(duckdb.connect()) as con:
        spill = staging / "duckdb"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET memory_limit = '{COMMIT_MEMORY_LIMIT}'")
        con.execute("SET temp_directory = ?", [str(spill)])
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")
        yield con


def _staged_paths(staging: Path) -> dict[str, str]:
    return {name: str(staging / f"{name}.parquet") for name in _STAGED}


def build_tables(staging: Path, out: Path, run: RunInfo, formats: list[str], batch_items: int,
                 compression: str, complete: bool = True, csv_dialect: str = "standard") -> list[dict[str, Any]]:
    """Build products, matches and seeds from the staged rows into ``out``, in every format; their file
    records. A run that is not ``complete`` goes under ``_incomplete/``."""
    with _database(staging) as con:
        staged = _staged_paths(staging)
        files: list[dict[str, Any]] = []
        for name, query in _TABLE_QUERIES.items():
            target = _TableFiles(out, TABLES[name], run, formats, batch_items, compression,
                                 Path() if complete else Path(INCOMPLETE_DIR), csv_dialect)
            params = {key: path for key, path in staged.items() if f"${key}" in query}
            target.write_all(con.sql(query, params=params).to_arrow_reader(_COMMIT_BATCH_ROWS))
            files += target.files
    return sorted(files, key=lambda f: f["path"])


def merge_worker_parts(staging: Path, owners: dict[str, str], seed_jobs: dict[str, str]) -> None:
    """A shared run's staged tables, from every worker's parts (``staging/workers/<worker>/``): for each seed,
    the rows of the worker that owns its search (``owners``: search -> worker; ``seed_jobs``: seed ->
    search), each hit once (a worker that redid a search after a restart staged it twice). Written where
    a single crawl stages them, for ``commit_staged``."""
    with _database(staging) as con:
        con.execute("CREATE TEMP TABLE owner (seed_id VARCHAR, worker VARCHAR)")
        pairs = [(seed, owners[job]) for seed, job in seed_jobs.items() if job in owners]
        if pairs:
            con.executemany("INSERT INTO owner VALUES (?, ?)", pairs)
        for name, table in _STAGED.items():
            parts = sorted(str(p) for p in (staging / WORKERS_DIR).glob(f"*/{name}-*.parquet"))
            target = staging / f"{name}.parquet"
            key = "s.seed_id" if name == SEEDS.name else "s.seed_id, s.page, s.position"
            writer = pq.ParquetWriter(target, table.arrow_schema, compression="zstd")
            try:
                if parts:
                    query = (
                        f"SELECT s.* EXCLUDE (filename) FROM read_parquet($parts, filename = true) s "
                        f"JOIN owner o ON s.seed_id = o.seed_id "
                        f"AND regexp_extract(s.filename, '/{WORKERS_DIR}/([^/]+)/[^/]+$', 1) = o.worker "
                        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY s.filename DESC) = 1"
                    )
                    for batch in con.execute(query, {"parts": parts}).to_arrow_reader(_COMMIT_BATCH_ROWS):
                        writer.write_batch(_conform(batch, table))
            finally:
                writer.close()


def build_runs_row(out: Path, run: RunInfo, formats: list[str], compression: str, complete: bool,
                   row: dict[str, Any], csv_dialect: str = "standard") -> list[dict[str, Any]]:
    """The run's one ``runs`` row, written into ``out`` in every format; its file records."""
    target = _TableFiles(out, RUNS, run, formats, 0, compression, Path() if complete else Path(INCOMPLETE_DIR),
                         csv_dialect)
    batch, rejected = TableConverter(RUNS).to_batch([tuple(row.get(name) for name in RUNS.column_names)])
    if rejected:
        raise ValueError(f"the runs row of run {run.run_id} lacks a required value: {row}")
    target.write_all([batch])
    return target.files


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


# -- products_latest ---------------------------------------------------------------------------

#: The Parquet metadata key of a snapshot that lists the finished runs it covers (a JSON list of ids).
COVERS_KEY = "covers_runs"


def latest_state(root: Path, formats: list[str]) -> Path:
    """The Parquet copy of products_latest a commit updates: the published one when Parquet is a
    format, else the dataset's own under ``_state/``."""
    if "parquet" in formats:
        return snapshot_file(root, "parquet", PRODUCTS_LATEST.name)
    return snapshot_file(root / STATE_DIR, "parquet", PRODUCTS_LATEST.name)


def snapshot_covers(path: Path) -> list[str] | None:
    """The run ids the snapshot at ``path`` covers, or None if there is none (or it says nothing)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    raw = metadata.get(COVERS_KEY.encode())
    covers = json.loads(raw) if raw else None
    return [str(run_id) for run_id in covers] if isinstance(covers, list) else None


def finished_runs(root: Path) -> set[str]:
    """The ids of the runs committed to ``root`` complete (their manifest says so)."""
    done: set[str] = set()
    for path in (root / MANIFEST_DIR).glob("*.json"):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("complete") is True and isinstance(manifest.get("run_id"), str):
            done.add(manifest["run_id"])
    return done


def _observations(select: str) -> str:
    """Products rows of ``select`` as observations: each seen once, at its crawled_at."""
    columns = ", ".join(PRODUCTS.column_names)
    return (f"SELECT {columns}, coalesce(crawled_at, run_started_at) AS first_seen_at, "
            f"coalesce(crawled_at, run_started_at) AS last_seen_at, 1::BIGINT AS runs_seen FROM ({select})")


def build_latest(root: Path, staging: Path, out: Path, run: RunInfo, formats: list[str],
                 compression: str, rebuild: bool = False, csv_dialect: str = "standard") -> dict[str, Any]:
    """products_latest with this (finished) run in it, built into ``out`` in every format; its record.

    Cheap whatever the history: the snapshot before it plus this run's products (a year of daily
    runs costs what the first month did, bench/bench_latest.py). Rebuilt from the Parquet products
    tree instead when the snapshot cannot be trusted to be that: missing, a run id committed again
    (its old observations must go), or a finished run it does not cover (a commit it lost the race
    to, say), or ``rebuild``. Caller holds ``snapshots_locked``.
    """
    state = latest_state(root, formats)
    covers = snapshot_covers(state)
    finished = finished_runs(root) - {run.run_id}
    history = sorted(str(p) for p in (root / "parquet" / PRODUCTS.name).glob("dt=*/*.parquet"))
    rebuild = rebuild or covers is None or run.run_id in covers or not finished <= set(covers)
    if rebuild and history:
        known = ", ".join("'" + r.replace("'", "''") + "'" for r in sorted(finished)) or "NULL"
        before = _observations(
            f"SELECT * FROM read_parquet($history, union_by_name = true, hive_partitioning = false) "
            f"WHERE run_id IN ({known})"
        )
        covered = sorted(finished)
        params: dict[str, Any] = {"history": history}
        logger.info("products_latest rebuilt from %d products files of %d finished runs", len(history), len(covered))
    elif covers is not None:
        before = "SELECT * FROM read_parquet($state)"
        covered, params = covers, {"state": str(state)}
    else:
        before, covered, params = "", [], {}
    columns = ", ".join(PRODUCTS.column_names)
    this_run = _observations(_TABLE_QUERIES[PRODUCTS.name])
    union = f"{this_run} UNION ALL BY NAME {before}" if before else this_run
    query = (
        f"WITH observations AS ({union}) "
        f"SELECT {columns}, min(first_seen_at) OVER seen AS first_seen_at, max(last_seen_at) OVER seen AS "
        f"last_seen_at, sum(runs_seen) OVER seen AS runs_seen FROM observations "
        f"WINDOW seen AS (PARTITION BY num_iid) "
        f"QUALIFY row_number() OVER (PARTITION BY num_iid ORDER BY run_started_at DESC NULLS LAST, "
        f"run_id DESC) = 1 ORDER BY num_iid"
    )
    params["hits"] = _staged_paths(staging)[HITS.name]
    covered = sorted({*covered, run.run_id})
    metadata = {COVERS_KEY: json.dumps(covered)}
    targets = {fmt: snapshot_file(out, fmt, PRODUCTS_LATEST.name) for fmt in formats}
    state_copy = latest_state(out, formats)
    if "parquet" not in formats:
        targets["state"] = state_copy
    with _database(staging) as con:
        reader = con.sql(query, params=params).to_arrow_reader(_COMMIT_BATCH_ROWS)
        files = _write_snapshot(reader, targets, compression, metadata, csv_dialect)
    for f in files:
        f["path"] = Path(f["path"]).relative_to(out).as_posix()
    return {"table": PRODUCTS_LATEST.name, "state": state.relative_to(root).as_posix(), "covers": covered,
            "files": files}


def _write_snapshot(reader: Any, targets: dict[str, Path], compression: str,
                    metadata: dict[str, str], csv_dialect: str) -> list[dict[str, Any]]:
    """Every batch of ``reader`` into each of ``targets`` (format: path; ``state``: a Parquet copy)."""
    opened: list[tuple[TableWriter, IO[bytes], Path, str]] = []
    try:
        for fmt, path in targets.items():
            kind = "parquet" if fmt == "state" else fmt
            path.parent.mkdir(parents=True, exist_ok=True)
            stream: IO[bytes] = path.open("wb")
            writer = table_writer(kind, stream, PRODUCTS_LATEST, compression, metadata, csv_dialect)
            opened.append((writer, stream, path, fmt))
        for batch in reader:
            batch = _conform(batch, PRODUCTS_LATEST)
            for writer, *_ in opened:
                writer.write(batch)
        files = []
        for writer, stream, path, fmt in opened:
            writer.close()
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            files.append({"path": str(path), "format": fmt, "table": PRODUCTS_LATEST.name,
                          "rows": writer.rows_written, "bytes": path.stat().st_size})
        return files
    except BaseException:
        for writer, stream, *_ in opened:
            writer.abandon()
            with contextlib.suppress(OSError):
                stream.close()
        raise


def apply_snapshot(root: Path, run_id: str, out: Path, snapshot: dict[str, Any]) -> None:
    """Move a commit's new snapshot in, unless the one there covers a run it does not (a later commit's:
    then the next commit rebuilds it with this run). Each file replaces its old self in one rename."""
    sources = [(out / f["path"], contained(root, root / f["path"])) for f in snapshot["files"]]
    if not any(source.exists() for source, _ in sources):
        return  # moved already
    current = snapshot_covers(root / snapshot["state"]) or []
    if not set(current) <= set(snapshot["covers"]):
        logger.warning("products_latest not replaced by run %s's: the one there covers runs it does not (%s); "
                       "the next commit rebuilds it", run_id, ", ".join(sorted(set(current) - set(snapshot["covers"]))))
        return
    # The state copy last: until it moves, the old state says this run is not covered yet.
    state = root / snapshot["state"]
    for source, final in sorted(sources, key=lambda pair: pair[1] == state.resolve()):
        if source.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, final)
            fsync_dir(final.parent)


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def write_commit_record(root: Path, record: dict[str, Any]) -> None:
    """Make the commit of ``record`` need nothing but renames, then write the record down, durably.

    Everything that can fail for want of space is done first: the manifest is written in the
    staging, beside the built files, and every directory the files go to is made. So a full disk
    fails the run before anything is visible, and a commit, once recorded, only moves files.
    """
    run_id = record["run_id"]
    out = staging_dir(root, run_id) / "out"
    atomic_write_bytes(manifest_path(out, run_id), _manifest_bytes(record["manifest"]))
    built = {(out / f["path"]).parent for f in record["manifest"]["files"]}
    for directory in sorted(built):
        fsync_dir(directory)  # the built files' names are durable before the record says to move them
    for f in [*record["manifest"]["files"], *(f for s in record.get("snapshots", ()) for f in s["files"])]:
        contained(root, root / f["path"]).parent.mkdir(parents=True, exist_ok=True)
    manifest_path(root, run_id).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(staging_dir(root, run_id) / COMMIT_RECORD,
                       json.dumps(record, ensure_ascii=False).encode("utf-8"))


def apply_commit(root: Path, record: dict[str, Any]) -> None:
    """Carry out a commit record: move its files into the trees, then its manifest, then remove
    what it replaces.

    Every step can be run again: a file already moved is skipped, so a commit cut short by a
    kill is finished by running this once more.
    """
    run_id = record["run_id"]
    staging = staging_dir(root, run_id)
    out = staging / "out"
    directories: set[Path] = set()
    for f in record["manifest"]["files"]:
        source, final = out / f["path"], contained(root, root / f["path"])
        if source.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, final)
            directories.add(final.parent)
        elif not final.exists():  # lost (a power cut before the files were durable): say so, never list it
            raise FileNotFoundError(errno.ENOENT, f"the commit of run {run_id} lists a file that is gone",
                                    str(source))
    for directory in directories:
        fsync_dir(directory)
    for snapshot in record.get("snapshots", ()):
        apply_snapshot(root, run_id, out, snapshot)
    manifest, built = manifest_path(root, run_id), manifest_path(out, run_id)
    if built.exists():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, manifest)
        fsync_dir(manifest.parent)
    elif not manifest.exists():
        atomic_write_bytes(manifest, _manifest_bytes(record["manifest"]))
    # After the manifest, which no longer lists them: an importer never meets a listed file missing.
    written = {f["path"] for f in record["manifest"]["files"]}
    resolved = root.resolve()
    for path in run_files(root, run_id):
        if contained(root, path).relative_to(resolved).as_posix() not in written:
            path.unlink(missing_ok=True)
            logger.info("Removed %s: left over from an earlier attempt at run %s", path, run_id)
    shutil.rmtree(staging, ignore_errors=True)


def _unheld_runs(root: Path, held: str | None) -> Iterator[tuple[str, Path]]:
    """``(run_id, staging)`` of each run staged in ``root`` that no crawl holds, its lock held meanwhile."""
    base = root / STAGING_DIR
    for staging in sorted(base.iterdir()) if base.is_dir() else ():
        run_id = staging.name
        if run_id == held or not staging.is_dir():
            continue
        lock = run_lock(root, run_id)
        try:
            lock.acquire()
        except RunLocked:
            continue  # a crawl of that run is running: its staging is its own
        try:
            if staging.is_dir():  # not finished by another start meanwhile
                yield run_id, staging
        finally:
            lock.release()


def finish_interrupted_commits(root: Path, held: str | None = None) -> list[str]:
    """Finish every commit of ``root`` that a kill cut short (a commit record left in its staging), and
    remove the staging a killed crawl left without a commit; the run ids finished. A run whose lock
    another crawl holds is left to it, and so is ``held``'s (the caller's own run).

    A staging without a commit record is of no use to anyone: a crawl resuming that run (from its
    JOBDIR journal) stages all its rows again.
    """
    finished: list[str] = []
    own = root / STAGING_DIR / held if held else None
    if own is not None and (own / COMMIT_RECORD).exists():
        _finish_commit(root, held or "", own, finished)
    for run_id, staging in _unheld_runs(root, held):
        if (staging / COMMIT_RECORD).exists():
            _finish_commit(root, run_id, staging, finished)
        elif (staging / SHARED_MARKER).exists():
            continue  # a shared run's workers' parts: its workers (on Redis) finish it
        else:
            shutil.rmtree(staging, ignore_errors=True)
            logger.info("Removed the staging of run %s, which a crawl stopped without committing", run_id)
    return finished


def _finish_commit(root: Path, run_id: str, staging: Path, finished: list[str]) -> None:
    record = json.loads((staging / COMMIT_RECORD).read_text(encoding="utf-8"))
    with snapshots_locked(root) if record.get("snapshots") else contextlib.nullcontext():
        apply_commit(root, record)
    logger.warning("Finished the commit of run %s, which was interrupted", run_id)
    finished.append(run_id)


def json_safe_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Crawl stats as JSON values (datetimes as ISO 8601), without keys that may carry secrets."""
    import re

    secret_key = re.compile(r"secret|sign|passw|token|credential|app_?key|session", re.IGNORECASE)
    safe: dict[str, Any] = {}
    for key, value in sorted(stats.items()):
        if secret_key.search(str(key)):
            continue
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        safe[str(key)] = value
    return safe


# -- the extension -----------------------------------------------------------------------------


class DatasetAddon:
    """Enabled in ADDONS. ``update_settings`` runs after ``-s`` options are applied, so it sees the final values.

    It resolves the run (DATASET_RUN_ID, else the one JOBDIR remembers, else a new id) and its dt
    partition, publishes both as DATASET_RUN_ID / DATASET_RUN_DATE for the pipelines, and enables
    DatasetRun, which stages the crawl's rows and commits the dataset layout
    ``DATASET_DIR/<format>/<table>/dt=<date>/<run_id>-<NNNNN>.<ext>`` at the end, unless the user
    gave feeds (``-o``/``-O``/FEEDS): then those are written instead, and DatasetRun only holds
    the JOBDIR.
    """

    def update_settings(self, settings: BaseSettings) -> None:
        run = resolve_run(settings)
        # At the priority they already have (settings.py's empty default is "project", above "addon").
        settings.set("DATASET_RUN_ID", run.run_id, priority=settings.getpriority("DATASET_RUN_ID") or "addon")
        settings.set("DATASET_RUN_DATE", run.dt, priority=settings.getpriority("DATASET_RUN_DATE") or "addon")
        settings.setdefault_in_component_priority_dict("EXTENSIONS", DatasetRun, 500)
        if settings.getdict("FEEDS") or settings.get("FEED_URI"):
            logger.info("Dataset run %s: user feeds given, default dataset layout not used", run.run_id)
            return
        try:
            formats = "+".join(dataset_formats(settings))
        except ConfigurationError:
            formats = "?"  # the spider's settings check says what is wrong, in one line
        logger.info("Dataset run %s: writing %s under %s", run.run_id, formats, settings["DATASET_DIR"])


class DatasetRun:
    """The run of this crawl: locks, staging, commit and manifest (enabled by ``DatasetAddon``).

    With feeds of the user's own (``-o``/``-O``) there is no dataset layout: the run only holds the
    JOBDIR lock. Stats: ``dataset/staged/<table>`` (rows staged), ``dataset/rejected/<table>``.
    """

    def __init__(self, crawler: Crawler, run: RunInfo, root: Path | None) -> None:
        self.crawler = crawler
        self.run = run
        self.root = root
        settings = crawler.settings
        self.jobdir = job_dir(settings)
        self.formats = dataset_formats(settings) if root else []
        self.batch_items = settings.getint("DATASET_BATCH_ITEMS")
        self.compression = str(settings.get("PARQUET_COMPRESSION") or "zstd")
        self.csv_dialect = csv_dialect(settings)
        self.stage_rows = STAGE_ROWS
        #: The manifest once written (the run is committed), for the crawl command's summary.
        self.written: dict[str, Any] | None = None
        #: The run's report, once written.
        self.report: Path | None = None
        #: The one line saying why the run failed (a write that failed), if it did.
        self.failure: str | None = None
        #: The commit is recorded: it can only be finished now (by this crawl, else by the next start).
        self.recorded = False
        self.started_at = datetime.now(UTC)
        self._locks: list[RunLock] = []
        self._staged: dict[str, StagedTable | PartStage] = {}
        #: This crawl as a worker of a shared run (IMAGESEARCH_REDIS_URL), else None.
        self.shared: SharedWorker | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DatasetRun:
        settings = crawler.settings
        run_id, dt = settings.get("DATASET_RUN_ID"), settings.get("DATASET_RUN_DATE")
        if not run_id or not dt:
            raise NotConfigured("DatasetRun needs DATASET_RUN_ID and DATASET_RUN_DATE (set by DatasetAddon)")
        layout = not (settings.getdict("FEEDS") or settings.get("FEED_URI"))
        root = Path(settings["DATASET_DIR"]) if layout else None
        started = _remembered(job_dir(settings)).get("started_at") if job_dir(settings) else None
        run = RunInfo(run_id, datetime.fromisoformat(started) if started else datetime.now(UTC), dt)
        extension = cls(crawler, run, root)
        if settings.get("IMAGESEARCH_REDIS_URL"):
            if root is None:
                raise ConfigurationError("IMAGESEARCH_REDIS_URL makes this crawl a worker of a shared run, which "
                                         "writes the dataset layout: leave out -o/-O/FEEDS")
            worker = settings.get("IMAGESEARCH_WORKER") or _remembered(job_dir(settings)).get("worker") \
                or default_worker_name()
            extension.shared = SharedWorker(crawler, run_id, staging_dir(root, run_id),
                                            safe_component(str(worker), "worker name"))
        extension.open()
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        if extension.shared is not None:
            crawler.signals.connect(extension.item_dropped, signal=signals.item_dropped)
            crawler.signals.connect(extension.item_dropped, signal=signals.item_error)
            crawler.signals.connect(extension.shared.start_heartbeat, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.engine_stopped, signal=signals.engine_stopped)
        return extension

    @property
    def staging(self) -> Path:
        assert self.root is not None
        return staging_dir(self.root, self.run.run_id)

    def open(self) -> None:
        """Take the locks, finish interrupted commits, and start the staging: before any call is made."""
        try:
            if self.jobdir:
                self._lock(RunLock(Path(self.jobdir) / JOBDIR_LOCK_FILE, f"JOBDIR {self.jobdir}"))
            if self.root is not None and self.shared is not None:
                self._open_shared()
            elif self.root is not None:
                if (self.staging / SHARED_MARKER).exists():
                    raise RunLocked(f"run {self.run.run_id} of {self.root} is a shared run on Redis: give its "
                                    "workers' IMAGESEARCH_REDIS_URL to join it, or choose another DATASET_RUN_ID")
                self._lock(run_lock(self.root, self.run.run_id))
                finish_interrupted_commits(self.root, held=self.run.run_id)
            if self.jobdir:
                remember(self.jobdir, self.run, self.shared.worker if self.shared else None)
        except OSError as exc:
            self.release()
            raise RunStorageFailed(storage_message(exc, Path(self.jobdir or self.root or "."))) from None
        except BaseException:
            self.release()
            raise
        if self.root is None:
            return
        if self.shared is not None:
            try:
                self._staged = {name: PartStage(self.shared.parts, table, name, self.stage_rows)
                                for name, table in _STAGED.items()}
            except OSError as exc:
                self.release()
                raise RunStorageFailed(storage_message(exc, self.shared.parts)) from None
            self.shared.stages = self._staged
            self.shared.manifest = manifest_path(self.root, self.run.run_id)
            return
        # A part of this run killed before its commit left staged rows: this crawl stages them all again.
        shutil.rmtree(self.staging, ignore_errors=True)
        try:
            self._staged = {
                name: StagedTable(self.staging / f"{name}.parquet", table, self.stage_rows)
                for name, table in _STAGED.items()
            }
        except OSError as exc:
            self.release()
            raise RunStorageFailed(storage_message(exc, self.staging)) from None

    def _open_shared(self) -> None:
        """A worker of a shared run: no lock of the run (its workers share it; the committer takes it), but
        the staging is marked shared, so that no other crawl's start removes it, and it is kept as it is."""
        assert self.root is not None and self.shared is not None
        finish_interrupted_commits(self.root, held=self.run.run_id)
        try:
            self.shared.queue.ping()
        except SharedRunUnavailable as exc:
            raise ConfigurationError(f"IMAGESEARCH_REDIS_URL: {exc}: start Redis, or fix the URL") from None
        self.staging.mkdir(parents=True, exist_ok=True)
        marker = self.staging / SHARED_MARKER
        if not marker.exists():
            atomic_write_bytes(marker, json.dumps({"run_id": self.run.run_id}).encode("utf-8"))

    def scratch_dir(self) -> Path | None:
        """Where the crawl may keep files it needs only while it runs (downloaded seed images): inside
        the run's staging, which the commit and the next start of the run remove, so that even a
        killed crawl leaves nothing of its own behind for long. ``None`` with user feeds."""
        return self.staging / "scratch" if self.root is not None else None

    def _lock(self, lock: RunLock) -> None:
        lock.acquire()
        self._locks.append(lock)

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks = []

    # -- staging ---------------------------------------------------------------------------------

    def item_scraped(self, item: Any) -> None:
        if not self._staged or self.failure is not None:
            return
        kind = item_kind(item)
        name = HITS.name if kind is ProductHit else SEEDS.name if kind is SeedSummary else None
        if name is None:
            return
        staged = self._staged[name]
        try:
            staged.add(item)
        except Exception as exc:  # noqa: BLE001 - _staging_failed fails the run, logging any non-OSError's traceback
            self._staging_failed(exc, staged.path)
            return
        if self.shared is not None and name == SEEDS.name:
            self.shared.seed_done(str(item.get("seed_id")))

    def item_dropped(self, item: Any) -> None:
        """A shared run's seed whose row was dropped (invalid) has no row to wait for."""
        if self.shared is not None and item_kind(item) is SeedSummary:
            self.shared.seed_done(str(item.get("seed_id")))

    def _staging_failed(self, exc: Exception, path: Path) -> None:
        """Rows could not be staged at ``path``: the run fails (exit 6) with one line, never passing for written."""
        if isinstance(exc, OSError):
            self.fail(storage_message(exc, path))
            return
        logger.error("Staging in %s failed", path, exc_info=exc)
        self.fail(f"cannot stage rows in {path}: {type(exc).__name__}: {exc}")

    def fail(self, message: str) -> None:
        """A write failed: the run is not committed, JOBDIR is kept, and the crawl closes (exit 6)."""
        if self.failure is not None:
            return
        self.failure = message
        logger.error("%s", message)
        self.crawler.stats.set_value("dataset/failure", message)
        _close(self.crawler, STORAGE_FAILED_REASON)

    # -- the end of the crawl --------------------------------------------------------------------

    def spider_closed(self, reason: str) -> None:
        try:
            self._finish(reason)
        finally:
            self.release()

    def engine_stopped(self) -> None:
        self.release()  # a crawl that never opened its spider

    def _finish(self, reason: str) -> None:
        if self.root is None:
            return
        if self.shared is not None:
            self._finish_shared(reason)
            return
        outcomes = getattr(self.crawler.spider, "unfinished_outcomes", None)  # the imagesearch spider's
        for row in outcomes(reason) if outcomes is not None and self._staged else ():
            row["run_started_at"] = self.run.started_at
            self.item_scraped(row)
        try:
            for name, staged in self._staged.items():
                staged.close()
                self.crawler.stats.set_value(f"dataset/staged/{name}", staged.rows_written)
                if staged.rejected:
                    self.crawler.stats.set_value(f"dataset/rejected/{name}", staged.rejected)
        except Exception as exc:  # noqa: BLE001 - as in item_scraped
            self._staging_failed(exc, self.staging)
        if self.failure is not None:
            logger.error("Dataset run %s not committed: %s. With JOBDIR the same command resumes it once "
                         "the cause is fixed", self.run.run_id, self.failure)
            return
        if reason == GATEWAY_UNREACHABLE_REASON:
            logger.warning("Dataset run %s not committed: the gateway never answered", self.run.run_id)
            return
        if self.jobdir and reason != "finished":
            logger.warning(
                "Dataset run %s stopped (%s) before it finished: nothing committed. "
                "Run the same command again to resume it from %s", self.run.run_id, reason, self.jobdir,
            )
            return
        if reason != "finished":
            logger.warning(
                "Dataset run %s stopped (%s) before it finished: committing what it has under %s/, marked "
                "\"complete\": false in its manifest (with -s JOBDIR=DIR a stopped run is resumable instead)",
                self.run.run_id, reason, self.root / INCOMPLETE_DIR,
            )
        try:
            self.commit(reason)
        except OSError as exc:
            self.fail(storage_message(exc, self.staging))
            if self.recorded:  # what is left is renames, which the next start finishes
                logger.error("Dataset run %s partly committed: %s. The next crawl on %s, or python -m pipeline.run "
                             "%s, finishes its commit", self.run.run_id, self.failure, self.root, self.root)
            else:
                logger.error("Dataset run %s not committed: %s", self.run.run_id, self.failure)
        except Exception as exc:  # a bug must not pass for a run that was written
            logger.error("Dataset run %s: the commit failed", self.run.run_id, exc_info=True)
            self.fail(f"the commit failed: {type(exc).__name__}: {exc}")

    def _finish_shared(self, reason: str) -> None:
        """A worker's end: ack what is durable; the one elected commits the run from every worker's parts."""
        assert self.shared is not None and self.root is not None
        try:
            commits = self.shared.finish(reason)
        except OSError as exc:
            self.fail(storage_message(exc, self.shared.parts))
            return
        for name, staged in self._staged.items():
            self.crawler.stats.set_value(f"dataset/staged/{name}", staged.rows_written)
        if self.shared.run_done and self.jobdir and self.failure is None:
            forget_finished_run(self.jobdir)  # its journal is of a run that is done: the next start is a new run
        if not commits or self.failure is not None:
            return
        lock = run_lock(self.root, self.run.run_id)
        lock.acquire(wait=True)  # one committer at a time, whatever Redis says of leases
        try:
            status, who = self.shared.queue.elect()
            if status == "committed" or self.shared.committed_on_disk():
                # Committed already (Redis may not have heard of it, if it was down just then): never again,
                # from parts that the commit removed.
                self.shared.lines.append(f"Run {self.run.run_id} is committed (by worker {who or 'another'})")
                self.shared.queue.committed()
                if self.jobdir:
                    forget_finished_run(self.jobdir)
                return
            if (self.staging / COMMIT_RECORD).exists():  # a committer died half-way: finish its commit
                finish_interrupted_commits(self.root)
            else:
                self.commit("finished")
            self.shared.queue.committed()
        except SharedRunUnavailable as exc:
            self.shared.unavailable(exc)
        except OSError as exc:
            self.fail(storage_message(exc, self.staging))
        except Exception as exc:  # a bug must not pass for a run that was written
            logger.error("Dataset run %s: the commit failed", self.run.run_id, exc_info=True)
            self.fail(f"the commit failed: {type(exc).__name__}: {exc}")
        finally:
            lock.release()

    def commit(self, reason: str) -> None:
        """Build the tables from the staging, then move them in by a durable, resumable commit record."""
        assert self.root is not None

        def recorded() -> None:
            self.recorded = True

        stats = self.crawler.stats.get_stats()
        workers = None
        if self.shared is not None:
            spider_seeds = getattr(self.crawler.spider, "shared_seed_jobs", None)
            seed_jobs: dict[str, str] = spider_seeds() if spider_seeds is not None else {}
            stats, workers = self._shared_stats(stats)
            merge_worker_parts(self.staging, self.shared.queue.owners(), seed_jobs)
            statuses = seed_statuses(self.staging)
            for status in ("ok", "rejected", "failed", "unfinished"):
                stats[f"imagesearch/seeds/{status}"] = statuses.get(status, 0)
        self.written = commit_staged(self.root, self.run, self.formats, self.batch_items, self.compression, reason,
                                     stats, self.started_at, on_record=recorded,
                                     csv_dialect=self.csv_dialect, workers=workers)
        logger.info("Dataset run %s finished: manifest %s (%d files)", self.run.run_id,
                    manifest_path(self.root, self.run.run_id), len(self.written["files"]))
        if self.jobdir:
            forget_finished_run(self.jobdir)
        self.write_report()

    def _shared_stats(self, stats: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The committer's stats with the run's calls (every worker's) in place of its own, and each
        worker's summary, for the manifest."""
        assert self.shared is not None
        workers: dict[str, Any] = self.shared.queue.worker_stats()
        workers[self.shared.worker] = self.shared.summary()
        stats = dict(stats)
        stats["imagesearch/calls"] = sum(int(w.get("calls", 0)) for w in workers.values())
        return stats, workers

    def write_report(self) -> None:
        """The run's visual report (REPORT_ENABLED), from the datasets just committed. The data is
        committed whatever happens here: a report that fails is said in one line, and the crawl's
        exit stays what the data says (``scrapy report RUN_ID`` writes it again)."""
        from pipeline.report import ReportError, write_report

        settings = self.crawler.settings
        if self.root is None or not settings.getbool("REPORT_ENABLED"):
            return
        try:
            self.report = write_report(self.root, self.run.run_id, top=settings.getint("REPORT_TOP_MATCHES"),
                                       page_seeds=settings.getint("REPORT_PAGE_SEEDS"))
        except (ReportError, OSError) as exc:
            logger.error("The run's report was not written (%s): its data is committed; scrapy report %s "
                         "writes the report again", exc, self.run.run_id)
            self.crawler.stats.set_value("report/failure", str(exc))
            return
        logger.info("Report of run %s: %s", self.run.run_id, self.report)


def commit_staged(root: Path, run: RunInfo, formats: list[str], batch_items: int, compression: str, reason: str,
                  stats: dict[str, Any], crawl_started_at: datetime | None = None,
                  on_record: Callable[[], None] | None = None, csv_dialect: str = "standard",
                  workers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Commit the run staged in ``root``: build its tables (and, finished, products_latest), write the
    commit record (then ``on_record()``: from there the commit can only be finished), apply it; its manifest.
    ``stats`` are the crawl's (calls, gateway, the manifest's copy)."""
    finished_at, complete = datetime.now(UTC), reason == "finished"
    staging = staging_dir(root, run.run_id)
    out = staging / "out"
    files = build_tables(staging, out, run, formats, batch_items, compression, complete, csv_dialect)
    rows: dict[str, dict[str, int]] = {}
    for f in files:
        by_table = rows.setdefault(f["format"], {})
        by_table[f["table"]] = by_table.get(f["table"], 0) + f["rows"]
    statuses = seed_statuses(staging)
    counts = rows.get(formats[0], {}) if formats else {}
    runs_row = {
        "run_id": run.run_id, "started_at": run.started_at, "finished_at": finished_at,
        "complete": complete, "finish_reason": reason,
        "gateway": stats.get("imagesearch/gateway"), "endpoint_host": stats.get("imagesearch/endpoint_host"),
        "seeds": sum(statuses.values()),
        **{f"seeds_{status}": statuses.get(status, 0) for status in ("ok", "rejected", "failed", "unfinished")},
        "calls": stats.get("imagesearch/calls", 0), "calls_replayed": stats.get("journal/replayed", 0),
        "products": counts.get(PRODUCTS.name, 0), "matches": counts.get(MATCHES.name, 0),
    }
    files = sorted(files + build_runs_row(out, run, formats, compression, complete, runs_row, csv_dialect),
                   key=lambda f: f["path"])
    for f in files:
        if f["table"] == RUNS.name:
            rows[f["format"]][RUNS.name] = f["rows"]
    manifest: dict[str, Any] = {
        "run_id": run.run_id,
        "dt": run.dt,
        # Which API answered, and where (a host, never a URL: no credentials can ride along).
        "gateway": stats.get("imagesearch/gateway"),
        "endpoint_host": stats.get("imagesearch/endpoint_host"),
        "started_at": run.started_at.isoformat(),
        "crawl_started_at": (crawl_started_at or run.started_at).isoformat(),
        "finished_at": finished_at.isoformat(),
        "finish_reason": reason,
        "complete": complete,
        "csv_dialect": csv_dialect if "csv" in formats else None,
        "calls": call_summary(stats),
        "rows": rows,
        "files": files,
        "stats": json_safe_stats(stats),
    }
    if workers is not None:
        manifest["workers"] = workers
    # products_latest takes finished runs only; the lock, from reading the snapshot to replacing it.
    with snapshots_locked(root) if complete else contextlib.nullcontext():
        record: dict[str, Any] = {"run_id": run.run_id, "manifest": manifest}
        if complete:
            latest = build_latest(root, staging, out, run, formats, compression, csv_dialect=csv_dialect)
            record["snapshots"] = [latest]
            manifest["snapshots"] = {latest["table"]: {
                "rows": latest["files"][0]["rows"], "runs": len(latest["covers"]),
                "paths": [f["path"] for f in latest["files"] if f["format"] in formats],
            }}
        write_commit_record(root, record)
        if on_record is not None:
            on_record()
        apply_commit(root, record)
    return manifest


def call_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``calls``: spent against planned, the quota, the waits for it, its bans, errors, silence."""
    return {
        "spent": stats.get("imagesearch/calls", 0),
        "replayed": stats.get("journal/replayed", 0),
        "planned": stats.get("progress/calls_planned"),
        "quota": stats.get("pacing/quota"),
        "waits": stats.get("pacing/waits", 0),
        "wait_seconds": stats.get("pacing/wait_seconds", 0.0),
        "bans": stats.get("pacing/quota_errors", 0),
        "ban_seconds": stats.get("pacing/ban_seconds", 0.0),
        "errors": error_count(stats),
        "longest_silence_seconds": stats.get("imagesearch/longest_silence_seconds", 0.0),
    }


def storage_message(exc: OSError, path: Path) -> str:
    """One line naming the path a write failed on and why (``No space left on device``)."""
    why = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"cannot write {exc.filename or path}: {why}"


def fail_run(crawler: Crawler, message: str) -> None:
    """A write the run depends on failed (its staging, its commit, the JOBDIR journal): stop, exit 6."""
    run = crawler.get_extension(DatasetRun) if crawler._extensions is not None else None
    if run is not None:
        run.fail(message)
        return
    logger.error("%s", message)
    crawler.stats.set_value("dataset/failure", message)
    _close(crawler, STORAGE_FAILED_REASON)


def _close(crawler: Crawler, reason: str) -> None:
    engine = crawler._engine  # None before the crawl starts: then it never starts
    if engine is not None and engine.spider is not None:
        closing = deferred_from_coro(engine.close_spider_async(reason=reason))
        closing.addErrback(lambda failure: logger.error("Closing the crawl failed", exc_info=failure.value))


def summary_lines(root: Path, manifest: dict[str, Any], report: Path | None = None) -> list[str]:
    """What a person reads at the end of a crawl: where each table went, its rows, and how the seeds fared."""
    state = "complete" if manifest["complete"] else f"INCOMPLETE, {manifest['finish_reason']}"
    lines = [f"Datasets of run {manifest['run_id']} ({state}) under {root}/:"]
    formats = [fmt for fmt in FORMAT_EXTENSIONS if fmt in manifest["rows"]]
    stats = manifest["stats"]
    tree = "" if manifest["complete"] else f"{INCOMPLETE_DIR}/"
    for table in TABLES:
        rows = manifest["rows"][formats[0]].get(table, 0) if formats else 0
        where = "  ".join(f"{tree}{fmt}/{table}/dt={manifest['dt']}/" for fmt in formats)
        line = f"  {table:<8} {rows:>9,} rows  {where}"
        if table == "seeds":
            statuses = ["ok", "rejected", "failed"]
            if stats.get("imagesearch/seeds/unfinished"):
                statuses.append("unfinished")
            outcomes = (f"{stats.get(f'imagesearch/seeds/{s}', 0):,} {s}" for s in statuses)
            line += "  (" + ", ".join(outcomes) + ")"
        lines.append(line)
    for table, snapshot in manifest.get("snapshots", {}).items():
        where = "  ".join(str(Path(path).parent) + "/" for path in snapshot["paths"])
        runs = f"{snapshot['runs']:,} finished run" + ("" if snapshot["runs"] == 1 else "s")
        lines.append(f"  {table}: {snapshot['rows']:,} rows over {runs}  {where}")
    lines.append(f"  manifest: {manifest_path(root, manifest['run_id'])}")
    if report is not None:
        lines.append(f"  report:   {report}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.run DATASET_DIR...``: finish the commits a kill cut short, and say which."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m pipeline.run DATASET_DIR [DATASET_DIR...]", file=sys.stderr)
        return 2
    logging.basicConfig(level="INFO", format="%(message)s")
    for root in map(Path, args):
        done = finish_interrupted_commits(root)
        print(f"{root}: {len(done)} interrupted commit(s) finished" + (f": {', '.join(done)}" if done else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
