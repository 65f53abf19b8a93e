"""The commit: the tables built, then a durable commit record (every rename to make), then the renames,
the manifest's last; a commit killed half-way is finished by the next start (``finish_interrupted_commits``;
``python -m pipeline.runs DATASET_DIR`` does it on its own), which also removes the staging a crawl killed
before its commit left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporters.layout import (
    contained,
    run_files,
)
from exporters.storage import atomic_write_bytes, fsync_dir
from items.schema import PRODUCTS, RUNS, SNAPSHOTS
from pipeline.errors import (
    RunLocked,
)
from pipeline.pictures import MAX_COLOUR, MAX_DISTANCE
from pipeline.runs.identity import COMMIT_RECORD, SHARED_MARKER, STAGING_DIR, RunInfo, manifest_path, staging_dir
from pipeline.runs.latest import apply_snapshot, build_latest, latest_state
from pipeline.runs.locks import run_lock, snapshots_locked
from pipeline.runs.manifest import build_manifest, rows_by_format, runs_row, snapshot_summary
from pipeline.runs.quality import CHECKS, CheckResult, evaluate, figures, previous_products
from pipeline.runs.staging import seed_statuses
from pipeline.runs.tables import TABLE_QUERIES, build_runs_row, build_tables, database, staged_paths

logger = logging.getLogger(__name__)


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


def run_checks(root: Path, staging: Path, run: RunInfo, statuses: dict[str, int], counts: dict[str, int],
               stats: dict[str, Any], checks: dict[str, dict[str, Any]]) -> list[CheckResult]:
    """The data-quality checks' results for the run staged in ``staging``."""
    with database(staging) as con:
        staged = staged_paths(staging)
        query = TABLE_QUERIES[PRODUCTS.name]
        found = figures(con, query, {k: v for k, v in staged.items() if f"${k}" in query}, statuses, counts, stats,
                        previous_products(root, run.run_id))
    return evaluate(found, checks)


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


def commit_staged(root: Path, run: RunInfo, formats: list[str], batch_items: int, compression: str, reason: str,
                  stats: dict[str, Any], crawl_started_at: datetime | None = None,
                  on_record: Callable[[], None] | None = None, csv_dialect: str = "standard",
                  workers: dict[str, Any] | None = None,
                  grouping: tuple[int, float] = (MAX_DISTANCE, MAX_COLOUR),
                  checks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Commit the run staged in ``root``: build its tables (and, finished, products_latest and offers_latest),
    write the commit record (then ``on_record()``: from there the commit can only be finished), apply it; its
    manifest. ``stats`` are the crawl's (calls, gateway, the manifest's copy); ``grouping`` the offer groups'
    thresholds (IMAGESEARCH_OFFER_MAX_DISTANCE, IMAGESEARCH_OFFER_MAX_COLOUR); ``checks`` the data-quality
    checks (pipeline/runs/quality.py; their results go into the manifest and the runs row)."""
    finished_at, complete = datetime.now(UTC), reason == "finished"
    staging = staging_dir(root, run.run_id)
    out = staging / "out"
    files = build_tables(staging, out, run, formats, batch_items, compression, complete, csv_dialect,
                         latest_state(root, formats), grouping)
    rows = rows_by_format(files)
    statuses, counts = seed_statuses(staging), rows.get(formats[0], {}) if formats else {}
    results = run_checks(root, staging, run, statuses, counts, stats, checks or CHECKS)
    row = runs_row(run, stats, statuses, counts, finished_at, reason)
    failed = [result.name for result in results if not result.passed]
    row.update(checks_failed=len(failed), failed_checks="; ".join(failed) or None)
    runs_files = build_runs_row(out, run, formats, compression, complete, row, csv_dialect)
    for f in runs_files:
        rows[f["format"]][RUNS.name] = f["rows"]
    manifest = build_manifest(run, stats, sorted(files + runs_files, key=lambda f: f["path"]), rows, reason,
                              finished_at, crawl_started_at, csv_dialect if "csv" in formats else None, workers)
    manifest["checks"] = [result.record() for result in results]
    # products_latest takes finished runs only; the lock, from reading the snapshot to replacing it.
    with snapshots_locked(root) if complete else contextlib.nullcontext():
        record: dict[str, Any] = {"run_id": run.run_id, "manifest": manifest}
        if complete:
            record["snapshots"] = [build_latest(root, staging, out, run, formats, compression, csv_dialect=csv_dialect,
                                                snapshot=snapshot) for snapshot in SNAPSHOTS.values()]
            manifest["snapshots"] = {latest["table"]: snapshot_summary(latest, formats)
                                     for latest in record["snapshots"]}
        write_commit_record(root, record)
        if on_record is not None:
            on_record()
        apply_commit(root, record)
    return manifest
