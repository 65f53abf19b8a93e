"""A run's identity and where its files go: its id and dt partition, what JOBDIR remembers of it, and the
names of the run's directories and files under DATASET_DIR and JOBDIR.

``resolve_run``: DATASET_RUN_ID, else the run JOBDIR remembers, else a new sortable id; its ``dt``
partition is its UTC start date unless DATASET_RUN_DATE says otherwise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.layout import (
    new_run_id,
    safe_component,
    safe_date,
)
from exporters.storage import atomic_write_bytes

if TYPE_CHECKING:
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
#: The gateway journal in JOBDIR (pipeline.components.journal): named for the way its records' call keys are
#: made (``ApiCall.key``): a journal keyed another way would match no call, and its answers be paid for again.
JOURNAL_FILE = "gateway-journal-v2.jsonl"
#: In a shared run's staging: marks it shared, so that no other crawl's start removes it.
SHARED_MARKER = "shared.json"
#: In a shared run's staging: each worker's part files, under ``workers/<worker>/``.
WORKERS_DIR = "workers"


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
    state = remembered(settings.get("JOBDIR"))
    if explicit and state and explicit != state.get("run_id"):
        logger.warning("DATASET_RUN_ID=%s overrides run %s remembered in JOBDIR", explicit, state.get("run_id"))
        state = {}
    run_id = safe_component(explicit or state.get("run_id") or new_run_id(now), "run id")
    started_at = datetime.fromisoformat(state["started_at"]) if state.get("started_at") else now
    committed = committed_dt(settings.get("DATASET_DIR"), run_id) if explicit else None
    dt = safe_date(settings.get("DATASET_RUN_DATE") or state.get("dt") or committed
                   or started_at.astimezone(UTC).date())
    return RunInfo(run_id, started_at, dt)


def committed_dt(root: str | None, run_id: str) -> str | None:
    """The dt partition run ``run_id`` was committed under in ``root``, if it was."""
    try:
        manifest = json.loads(manifest_path(Path(root), run_id).read_text(encoding="utf-8")) if root else {}
    except (OSError, ValueError):
        return None
    dt = manifest.get("dt") if isinstance(manifest, dict) else None
    return dt if isinstance(dt, str) else None


def remembered(jobdir: str | None) -> dict[str, str]:
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
    if remembered(str(jobdir)) != state:  # a resumed run writes nothing (a full disk may have room for no more)
        atomic_write_bytes(Path(jobdir) / RUN_STATE_FILE, json.dumps(state).encode("utf-8"))


def forget_finished_run(jobdir: str | Path) -> None:
    """Clear JOBDIR of a run that is finished and committed: the next crawl with it starts a new run."""
    for name in (JOURNAL_FILE, RUN_STATE_FILE):
        (Path(jobdir) / name).unlink(missing_ok=True)


def staging_dir(root: Path, run_id: str) -> Path:
    """``root/_staging/<run_id>``: a run's staged rows and built files until it commits them."""
    return root / STAGING_DIR / safe_component(run_id, "run id")


def manifest_path(root: Path, run_id: str) -> Path:
    """``root/_manifests/<run_id>.json``: beside the format trees, so no reader's glob meets it."""
    return root / MANIFEST_DIR / f"{safe_component(run_id, 'run id')}.json"

