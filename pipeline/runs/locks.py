"""The locks of a run and of a JOBDIR: each held by one crawl at a time.

An OS file lock (``fcntl.flock``), which the kernel releases when the process dies, so a SIGKILL leaves
no stale lock. A second crawl stops before any call (``RunLocked``, exit 5), naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from exporters.layout import (
    safe_component,
)
from pipeline.errors import (
    RunLocked,
)
from pipeline.runs.identity import LOCK_DIR


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

