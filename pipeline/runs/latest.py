"""products_latest and offers_latest: one row per product (per offer group) over every finished run, updated
at each finished run's commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from exporters.itemexporters import TableWriter, table_writer
from exporters.layout import (
    STATE_DIR,
    contained,
    snapshot_file,
)
from exporters.storage import fsync_dir
from items.schema import OFFERS, OFFERS_LATEST, PRODUCTS, PRODUCTS_LATEST, Table
from pipeline.runs.identity import MANIFEST_DIR, RunInfo
from pipeline.runs.tables import COMMIT_BATCH_ROWS, TABLE_QUERIES, conform, database, staged_paths

logger = logging.getLogger(__name__)


#: The Parquet metadata key of a snapshot that lists the finished runs it covers (a JSON list of ids).
COVERS_KEY = "covers_runs"


#: Each snapshot: the table of the runs it is made of, the column a row is one of, and when a row was seen.
SOURCES: dict[str, tuple[Table, str, str]] = {
    PRODUCTS_LATEST.name: (PRODUCTS, "num_iid", "coalesce(crawled_at, run_started_at)"),
    OFFERS_LATEST.name: (OFFERS, "offer_id", "run_started_at"),
}


def latest_state(root: Path, formats: list[str], snapshot: Table = PRODUCTS_LATEST) -> Path:
    """The Parquet copy of a snapshot (products_latest) a commit updates: the published one when Parquet
    is a format, else the dataset's own under ``_state/``."""
    if "parquet" in formats:
        return snapshot_file(root, "parquet", snapshot.name)
    return snapshot_file(root / STATE_DIR, "parquet", snapshot.name)


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


def _observations(select: str, source: Table = PRODUCTS, seen: str = "coalesce(crawled_at, run_started_at)") -> str:
    """Rows of ``select`` (of ``source``) as observations: each seen once, at ``seen``."""
    columns = ", ".join(source.column_names)
    return (f"SELECT {columns}, {seen} AS first_seen_at, {seen} AS last_seen_at, 1::BIGINT AS runs_seen "
            f"FROM ({select})")


def build_latest(root: Path, staging: Path, out: Path, run: RunInfo, formats: list[str],
                 compression: str, rebuild: bool = False, csv_dialect: str = "standard",
                 snapshot: Table = PRODUCTS_LATEST) -> dict[str, Any]:
    """``snapshot`` (products_latest, offers_latest) with this (finished) run in it, built into ``out`` in
    every format; its record.

    Cheap whatever the history: the snapshot before it plus this run's products (a year of daily
    runs costs what the first month did, bench/bench_latest.py). Rebuilt from the Parquet products
    tree instead when the snapshot cannot be trusted to be that: missing, a run id committed again
    (its old observations must go), or a finished run it does not cover (a commit it lost the race
    to, say), or ``rebuild``. Caller holds ``snapshots_locked``.
    """
    source, key, seen = SOURCES[snapshot.name]
    state = latest_state(root, formats, snapshot)
    covers = snapshot_covers(state)
    finished = finished_runs(root) - {run.run_id}
    history = sorted(str(p) for p in (root / "parquet" / source.name).glob("dt=*/*.parquet"))
    rebuild = rebuild or covers is None or run.run_id in covers or not finished <= set(covers)
    if rebuild and history:
        known = ", ".join("'" + r.replace("'", "''") + "'" for r in sorted(finished)) or "NULL"
        before = _observations(
            f"SELECT * FROM read_parquet($history, union_by_name = true, hive_partitioning = false) "
            f"WHERE run_id IN ({known})", source, seen
        )
        covered = sorted(finished)
        params: dict[str, Any] = {"history": history}
        logger.info("%s rebuilt from %d %s files of %d finished runs", snapshot.name, len(history), source.name,
                    len(covered))
    elif covers is not None:
        before = "SELECT * FROM read_parquet($state)"
        covered, params = covers, {"state": str(state)}
    else:
        before, covered, params = "", [], {}
    columns = ", ".join(source.column_names)
    this_run = _observations(TABLE_QUERIES[source.name], source, seen)
    union = f"{this_run} UNION ALL BY NAME {before}" if before else this_run
    query = (
        f"WITH observations AS ({union}) "
        f"SELECT {columns}, min(first_seen_at) OVER seen AS first_seen_at, max(last_seen_at) OVER seen AS "
        f"last_seen_at, sum(runs_seen) OVER seen AS runs_seen FROM observations "
        f"WINDOW seen AS (PARTITION BY {key}) "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY run_started_at DESC NULLS LAST, "
        f"run_id DESC) = 1 ORDER BY {key}"
    )
    staged = staged_paths(staging)
    params.update({name: path for name, path in staged.items() if f"${name}" in query})
    covered = sorted({*covered, run.run_id})
    metadata = {COVERS_KEY: json.dumps(covered)}
    targets = {fmt: snapshot_file(out, fmt, snapshot.name) for fmt in formats}
    state_copy = latest_state(out, formats, snapshot)
    if "parquet" not in formats:
        targets["state"] = state_copy
    with database(staging) as con:
        reader = con.sql(query, params=params).to_arrow_reader(COMMIT_BATCH_ROWS)
        files = _write_snapshot(reader, targets, compression, metadata, csv_dialect, snapshot)
    for f in files:
        f["path"] = Path(f["path"]).relative_to(out).as_posix()
    return {"table": snapshot.name, "state": state.relative_to(root).as_posix(), "covers": covered,
            "files": files}


def _write_snapshot(reader: Any, targets: dict[str, Path], compression: str,
                    metadata: dict[str, str], csv_dialect: str, snapshot: Table = PRODUCTS_LATEST
                    ) -> list[dict[str, Any]]:
    """Every batch of ``reader`` into each of ``targets`` (format: path; ``state``: a Parquet copy)."""
    opened: list[tuple[TableWriter, IO[bytes], Path, str]] = []
    try:
        for fmt, path in targets.items():
            kind = "parquet" if fmt == "state" else fmt
            path.parent.mkdir(parents=True, exist_ok=True)
            stream: IO[bytes] = path.open("wb")
            writer = table_writer(kind, stream, snapshot, compression, metadata, csv_dialect)
            opened.append((writer, stream, path, fmt))
        for batch in reader:
            batch = conform(batch, snapshot)
            for writer, *_ in opened:
                writer.write(batch)
        files = []
        for writer, stream, path, fmt in opened:
            writer.close()
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            files.append({"path": str(path), "format": fmt, "table": snapshot.name,
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
        logger.warning("%s not replaced by run %s's: the one there covers runs it does not (%s); "
                       "the next commit rebuilds it", snapshot["table"], run_id,
                       ", ".join(sorted(set(current) - set(snapshot["covers"]))))
        return
    # The state copy last: until it moves, the old state says this run is not covered yet.
    state = root / snapshot["state"]
    for source, final in sorted(sources, key=lambda pair: pair[1] == state.resolve()):
        if source.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, final)
            fsync_dir(final.parent)

