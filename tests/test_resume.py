"""Kill a real crawl with SIGKILL at different points, restart the same command, and get the same datasets.

Every kill leaves the JOBDIR and the dataset tree as they are; the restarted crawl must finish the
same run with the datasets an uninterrupted crawl writes, spend calls only on answers that were not
journaled yet, and no reader may ever see a partial or corrupt file.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datasets import REPO, assert_same_datasets, run_crawl, write_seed_photos
from pipeline.journal import JOURNAL_FILE
from sandbox.testing import SandboxProcess

SEEDS = 24
PAGES = 3  # --page-size 5 --max-results 15: three full pages per seed
CALLS = SEEDS * PAGES
CRAWL_OPTIONS = ("-a", f"pages={PAGES}", "-s", "IMAGESEARCH_QUOTA=", "-s", "CONCURRENT_REQUESTS=4")


@pytest.fixture(scope="module")
def gateway() -> SandboxProcess:
    # Answers held back a little, so that a kill can land while calls are in flight.
    with SandboxProcess("--page-size", "5", "--max-results", "15", "--fault-slow", "0.5", "--slow-seconds", "0.05") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("seeds")
    write_seed_photos(directory, SEEDS)
    return directory


@pytest.fixture(scope="module")
def reference(gateway: SandboxProcess, seeds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted crawl's datasets."""
    out = tmp_path_factory.mktemp("reference") / "datasets"
    before = gateway.stats()["calls"]["total"]
    run = run_crawl(str(seeds), *CRAWL_OPTIONS, dataset_dir=out, endpoint=gateway.endpoint)
    assert run.returncode == 0, run.tail()
    assert gateway.stats()["calls"]["total"] - before == CALLS
    return out


def journal_lines(jobdir: Path) -> int:
    path = jobdir / JOURNAL_FILE
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


def visible_files(root: Path) -> list[Path]:
    """What a reader globbing the format trees can see (dot-prefixed temporary files excluded)."""
    return [p for fmt in ("parquet", "csv") for p in (root / fmt).rglob(f"*.{fmt}") if not p.name.startswith(".")]


def assert_every_visible_file_is_whole(root: Path) -> None:
    for path in visible_files(root):
        if path.suffix == ".parquet":
            pq.read_table(path)  # raises on a truncated or corrupt file
        else:
            with path.open(encoding="utf-8", newline="") as file:
                rows = list(csv.reader(file))
            assert rows and all(len(r) == len(rows[0]) for r in rows), f"ragged CSV {path}"


def crawl_command(seeds: Path, jobdir: Path, out: Path, endpoint: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}",
        "-s", f"DATASET_DIR={out}", "-s", f"JOBDIR={jobdir}", "-s", f"IMAGESEARCH_ENDPOINT={endpoint}",
        *CRAWL_OPTIONS, *extra,
    ]


def kill_when(command: list[str], ready: Callable[[], bool], log: Path, timeout: float = 120) -> None:
    """Start the crawl, SIGKILL it as soon as ``ready()`` holds (polled every 2 ms).

    The crawl logs to a file, not a pipe: nobody reads a pipe while we poll, and a crawl that logs
    a line per batch file would fill it and block.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the crawl ended (exit {process.returncode}) before the kill point was reached:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"kill point not reached in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.002)
    finally:
        process.kill()  # SIGKILL (a no-op if it already ended)
        process.wait()


def staged(out: Path, suffix: str) -> bool:
    return any(p.name.endswith(suffix) or ".tmp-" in p.name for p in (out / "_staging").rglob("*"))


KILL_POINTS: dict[str, tuple[tuple[str, ...], Callable[[Path, Path], bool]]] = {
    # name: (extra crawl options, condition on (jobdir, dataset_dir))
    "just started": ((), lambda job, out: (job / "dataset_run.json").exists()),
    "calls in flight, few answers saved": ((), lambda job, out: journal_lines(job) >= 5),
    "calls in flight, most answers saved": ((), lambda job, out: journal_lines(job) >= CALLS * 2 // 3),
    "while batch files are written": (
        ("-s", "DATASET_BATCH_ITEMS=25"),
        lambda job, out: journal_lines(job) >= CALLS // 2 and staged(out, ".parquet"),
    ),
    "all answers saved, products being emitted": ((), lambda job, out: journal_lines(job) >= CALLS),
    "during the final commit": (
        ("-s", "DATASET_BATCH_ITEMS=1"),  # hundreds of files: the commit takes long enough to land in
        lambda job, out: bool(visible_files(out)),
    ),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_restart_gives_the_uninterrupted_datasets(
    point: str, gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path,
) -> None:
    extra, ready = KILL_POINTS[point]
    jobdir, out = tmp_path / "job", tmp_path / "datasets"
    command = crawl_command(seeds, jobdir, out, gateway.endpoint, *extra)

    kill_when(command, lambda: ready(jobdir, out), tmp_path / "killed-crawl.log")
    assert not list((out / "_manifests").glob("*.json")), "a killed run must not look finished"
    assert_every_visible_file_is_whole(out)
    saved = journal_lines(jobdir)
    run_id = json.loads((jobdir / "dataset_run.json").read_text())["run_id"]

    before = gateway.stats()["calls"]["total"]
    restarted = run_crawl(str(seeds), *CRAWL_OPTIONS, *extra, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
    assert restarted.returncode == 0, restarted.tail()
    # Calls only for the answers not saved before the kill.
    assert gateway.stats()["calls"]["total"] - before == CALLS - saved
    assert restarted.stats.get("journal/replayed", 0) == saved

    manifest = restarted.manifest()
    assert manifest["run_id"] == run_id and manifest["complete"] is True
    assert_every_visible_file_is_whole(out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in visible_files(out))
    assert on_disk == sorted(f["path"] for f in manifest["files"])  # nothing left over from the killed part
    assert_same_datasets(reference, out)
    # The finished run freed its JOBDIR: the next crawl with it is a new run.
    assert not (jobdir / JOURNAL_FILE).exists()
