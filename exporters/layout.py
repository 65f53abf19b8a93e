"""The dataset layout's naming rules: run ids, partition directories, file names, and path-safety checks."""

from __future__ import annotations

import glob
import logging
import re
import secrets
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

#: File extension of each dataset format; also the list of formats DATASET_FORMATS may name.
FORMAT_EXTENSIONS: dict[str, str] = {"parquet": "parquet", "csv": "csv"}
#: Run ids as generated: ``20261125T101500Z-3fa2c1`` (UTC start time, then 24 random bits).
#: Where a run that did not finish is committed (``DATASET_DIR/_incomplete/<format>/<table>/dt=...``):
#: beside the format trees, so that no reader's glob of them meets a partial run.
INCOMPLETE_DIR = "_incomplete"
#: Where a dataset keeps what it needs between runs and no reader should glob (products_latest's own
#: copy, when Parquet is not among the formats).
STATE_DIR = "_state"
GENERATED_RUN_ID_RE = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-[0-9a-f]{6}$")
#: Anything that becomes a directory or file name: no separators, no dot-dot, not hidden.
_SAFE_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
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


def partition_dir(root: Path, fmt: str, table: str, dt: str) -> Path:
    """``root/<format>/<table>/dt=<YYYY-MM-DD>``, every component checked, and contained in *root*."""
    path = root / safe_component(fmt, "format") / safe_component(table, "table") / f"dt={safe_date(dt)}"
    contained(root, path)
    return path


def snapshot_file(root: Path, fmt: str, table: str) -> Path:
    """``root/<format>/<table>/<table>.<ext>``: the one file of a table every commit replaces whole."""
    path = root / safe_component(fmt, "format") / safe_component(table, "table") / f"{table}.{FORMAT_EXTENSIONS[fmt]}"
    contained(root, path)
    return path


def batch_file_name(run_id: str, fmt: str, batch: int | None = None) -> str:
    """``<run_id>-<NNNNN>.<ext>``: a run's files sort together and two runs never collide.

    Without *batch*, the feed URI template Scrapy fills in: ``<run_id>-%(batch_id)05d.<ext>``.
    """
    number = "%(batch_id)05d" if batch is None else f"{batch:05d}"
    return f"{safe_component(run_id, 'run id')}-{number}.{FORMAT_EXTENSIONS[fmt]}"


def run_files(root: Path, run_id: str) -> list[Path]:
    """Every finished file *run_id* has in the format trees under *root*, and under its
    ``_incomplete/`` (temporary files excluded).

    Names must be exactly ``<run_id>-<digits>.<ext>``: run ``daily`` must not take the files of
    run ``daily-20261125`` for its own (a glob on ``daily-*`` would).
    """
    files: list[Path] = []
    for fmt, ext in FORMAT_EXTENSIONS.items():
        name = re.compile(rf"{re.escape(safe_component(run_id, 'run id'))}-\d{{5,}}\.{re.escape(ext)}")
        prefix = glob.escape(run_id)
        for tree in (root / fmt, root / INCOMPLETE_DIR / fmt):
            files += (p for p in tree.glob(f"*/dt=*/{prefix}-*.{ext}") if name.fullmatch(p.name))
    return sorted(files)
