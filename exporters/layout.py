"""Where a run's datasets go: run ids, the partitioned file layout, and path-safety checks."""

from __future__ import annotations

import glob
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

#: File extension of each dataset format; also the list of formats DATASET_FORMATS may name.
FORMAT_EXTENSIONS: dict[str, str] = {"parquet": "parquet", "csv": "csv"}
#: Run ids as generated: ``20261125T101500Z-3fa2c1`` (UTC start time, then 24 random bits).
GENERATED_RUN_ID_RE = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-[0-9a-f]{6}$")
#: Anything that becomes a directory or file name: no separators, no dot-dot, not hidden.
_SAFE_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Where a crawl's JOBDIR remembers its run, so a resumed crawl writes to the same run.
RUN_STATE_FILE = "dataset_run.json"
MANIFEST_DIR = "_manifests"
#: Where a run writes its files until it commits them; underscore-prefixed, beside the format trees.
STAGING_DIR = "_staging"


def safe_component(value: str, what: str) -> str:
    """Return *value* if it is safe as one path component under DATASET_DIR, else raise ValueError.

    Refused: empty, '.', '..', anything with a path separator, NUL, a drive or URI colon,
    a '%' (feed URIs are printf templates), or a leading '.'/'_' (readers would skip the
    file silently, which loses data as surely as writing it elsewhere).
    """
    if not isinstance(value, str) or not _SAFE_COMPONENT_RE.fullmatch(value) or ".." in value:
        raise ValueError(f"unsafe {what} for a dataset path: {value!r} (allowed: letters, digits, '.', '_', '=', '-')")
    return value


def safe_date(value: str | date) -> str:
    """A partition date as ``YYYY-MM-DD``; anything else raises ValueError."""
    text = value.isoformat() if isinstance(value, date) else str(value)
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"unsafe dt partition {value!r}: expected YYYY-MM-DD")
    date.fromisoformat(text)  # rejects 2026-13-45
    return text


def contained(root: Path, path: Path) -> Path:
    """*path* resolved, refusing anything that resolves outside *root* (symlinks included)."""
    resolved_root, resolved = root.resolve(), path.resolve()
    if not resolved.is_relative_to(resolved_root):
        raise ValueError(f"dataset path {path} escapes DATASET_DIR {root}")
    return resolved


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20261125T101500Z-3fa2c1``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunInfo:
    """The identity of one crawl run: its id, when it started and its dt partition."""

    run_id: str
    started_at: datetime
    dt: str


def resolve_run(settings: BaseSettings, now: datetime | None = None) -> RunInfo:
    """The run this crawl writes: DATASET_RUN_ID if set, else the one JOBDIR remembers, else a new one.

    With JOBDIR the run is remembered in ``JOBDIR/dataset_run.json``, so a crawl resumed from the
    same JOBDIR keeps its run id and dt partition. The resumed crawl replays the journaled answers,
    so it rewrites the whole run: same file names from 00001, the earlier part's leftovers removed
    (see DatasetManifest), one manifest.
    """
    now = now or datetime.now(UTC)
    explicit = settings.get("DATASET_RUN_ID") or None
    jobdir = settings.get("JOBDIR")
    state_path = Path(jobdir) / RUN_STATE_FILE if jobdir else None
    state: dict[str, str] = {}
    if state_path is not None and state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if explicit and explicit != state.get("run_id"):
            logger.warning(
                "DATASET_RUN_ID=%s overrides run %s remembered in %s", explicit, state.get("run_id"), state_path
            )
            state = {}
    run_id = safe_component(explicit or state.get("run_id") or new_run_id(now), "run id")
    started_at = datetime.fromisoformat(state["started_at"]) if state.get("started_at") else now
    dt = safe_date(settings.get("DATASET_RUN_DATE") or state.get("dt") or started_at.astimezone(UTC).date())
    if state_path is not None and not state:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(
            json.dumps({"run_id": run_id, "started_at": started_at.isoformat(), "dt": dt}), encoding="utf-8"
        )
    return RunInfo(run_id, started_at, dt)


def partition_dir(root: Path, fmt: str, table: str, dt: str) -> Path:
    """``root/<format>/<table>/dt=<YYYY-MM-DD>``, every component checked, and contained in *root*."""
    path = root / safe_component(fmt, "format") / safe_component(table, "table") / f"dt={safe_date(dt)}"
    contained(root, path)
    return path


def batch_file_name(run_id: str, fmt: str, batch: int | None = None) -> str:
    """``<run_id>-<NNNNN>.<ext>``: a run's files sort together and two runs never collide.

    Without *batch*, the feed URI template Scrapy fills in: ``<run_id>-%(batch_id)05d.<ext>``.
    """
    number = "%(batch_id)05d" if batch is None else f"{batch:05d}"
    return f"{safe_component(run_id, 'run id')}-{number}.{FORMAT_EXTENSIONS[fmt]}"


def run_files(root: Path, run_id: str) -> list[Path]:
    """Every finished file *run_id* has in the format trees under *root* (temporary files excluded).

    Names must be exactly ``<run_id>-<digits>.<ext>``: run ``daily`` must not take the files of
    run ``daily-20261125`` for its own (a glob on ``daily-*`` would).
    """
    files: list[Path] = []
    for fmt, ext in FORMAT_EXTENSIONS.items():
        name = re.compile(rf"{re.escape(safe_component(run_id, 'run id'))}-\d{{5,}}\.{re.escape(ext)}")
        prefix = glob.escape(run_id)
        files += (p for p in (root / fmt).glob(f"*/dt=*/{prefix}-*.{ext}") if name.fullmatch(p.name))
    return sorted(files)


def forget_finished_run(jobdir: str | Path) -> None:
    """Clear JOBDIR of a run that is finished and committed: the next crawl with it starts a new run."""
    from pipeline.journal import JOURNAL_FILE  # the gateway journal: answers of the finished run

    for name in (JOURNAL_FILE, RUN_STATE_FILE):
        (Path(jobdir) / name).unlink(missing_ok=True)


def staging_dir(root: Path, run_id: str) -> Path:
    """``root/_staging/<run_id>``: a run's files until it commits them; no reader's glob reaches it."""
    return root / STAGING_DIR / safe_component(run_id, "run id")


def manifest_path(root: Path, run_id: str) -> Path:
    """``root/_manifests/<run_id>.json``: beside the format trees, so no reader's glob meets it."""
    return root / MANIFEST_DIR / f"{safe_component(run_id, 'run id')}.json"
