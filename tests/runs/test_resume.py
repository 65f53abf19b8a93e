"""Kill a real crawl with SIGKILL at different points, restart the same command, and get the same datasets.

Every kill leaves the JOBDIR and the dataset tree as they are; the restarted crawl must finish the
same run with the datasets an uninterrupted crawl writes, spend calls only on answers that were not
journaled yet, and no reader may ever see a partial or corrupt file.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from datasets import assert_same_datasets, published, run_crawl, stop_when, write_seed_photos

from pipeline.runs.identity import JOURNAL_FILE
from sandbox.testing import SandboxProcess

SEEDS = 24
PAGES = 3  # --page-size 5 --max-results 15: three full pages per seed
CALLS = SEEDS * PAGES
CRAWL_OPTIONS = ("-a", f"pages={PAGES}", "-s", "IMAGESEARCH_QUOTA=", "-s", "CONCURRENT_REQUESTS=4",
                 "-s", "IMAGESEARCH_PICTURES=False")


@pytest.fixture(scope="module")
def gateway() -> SandboxProcess:
    # Answers held back a little, so that a kill can land while calls are in flight.
    with SandboxProcess(
        "--page-size", "5", "--max-results", "15", "--fault-slow", "0.5", "--slow-seconds", "0.05"
    ) as sandbox:
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


def crawl_command(seeds: Path, jobdir: Path | None, out: Path, endpoint: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}",
        "-s", f"DATASET_DIR={out}", "-s", f"IMAGESEARCH_ENDPOINT={endpoint}",
        *(("-s", f"JOBDIR={jobdir}") if jobdir else ()), *CRAWL_OPTIONS, *extra,
    ]


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

    stop_when(command, lambda: ready(jobdir, out), tmp_path / "killed-crawl.log")
    assert not list((out / "_manifests").glob("*.json")), "a killed run must not look finished"
    assert_every_visible_file_is_whole(out)
    saved = journal_lines(jobdir)
    run_id = json.loads((jobdir / "dataset_run.json").read_text())["run_id"]

    before = gateway.stats()["calls"]["total"]
    restarted = run_crawl(
        str(seeds), *CRAWL_OPTIONS, *extra, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint
    )
    assert restarted.returncode == 0, restarted.tail()
    # Calls only for the answers not saved before the kill.
    assert gateway.stats()["calls"]["total"] - before == CALLS - saved
    assert restarted.stats.get("journal/replayed", 0) == saved

    manifest = restarted.manifest()
    assert manifest["run_id"] == run_id and manifest["complete"] is True
    assert_every_visible_file_is_whole(out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in visible_files(out))
    assert on_disk == published(manifest)  # nothing left over from the killed part
    assert_same_datasets(reference, out)
    # The finished run freed its JOBDIR: the next crawl with it is a new run.
    assert not (jobdir / JOURNAL_FILE).exists()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_graceful_stop_then_restart_gives_the_uninterrupted_datasets(
    stop: signal.Signals, gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path,
) -> None:
    """SIGTERM from a scheduler, or Ctrl-C: Scrapy closes the crawl cleanly; the run stays unfinished and resumable."""
    jobdir, out, log = tmp_path / "job", tmp_path / "datasets", tmp_path / "stopped-crawl.log"
    command = crawl_command(seeds, jobdir, out, gateway.endpoint)
    returncode = stop_when(command, lambda: journal_lines(jobdir) >= CALLS // 3, log, stop)
    text = log.read_text(errors="replace")
    assert returncode == 4, text[-3000:]  # a scheduler must not take a stopped run for a finished one
    assert "Traceback" not in text, text[-3000:]
    assert text.strip().splitlines()[-1] == (
        "scrapy crawl imagesearch: the crawl stopped before it finished (shutdown):"
        " run the same command again to resume it"
    )
    assert not list((out / "_manifests").glob("*.json")), "a stopped run must not look finished"
    assert not visible_files(out), "a stopped run must not commit files"
    saved = journal_lines(jobdir)
    assert saved < CALLS, "the crawl finished before the stop signal landed"

    before = gateway.stats()["calls"]["total"]
    restarted = run_crawl(
        str(seeds), *CRAWL_OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint
    )
    assert restarted.returncode == 0, restarted.tail()
    assert gateway.stats()["calls"]["total"] - before == CALLS - saved
    assert restarted.manifest()["complete"] is True
    assert_same_datasets(reference, out)


def test_stopped_crawl_without_jobdir_commits_what_it_has_marked_incomplete(
    gateway: SandboxProcess, seeds: Path, tmp_path: Path,
) -> None:
    """Without JOBDIR nothing can resume the run: its rows are kept, and said to be incomplete."""
    out, log = tmp_path / "datasets", tmp_path / "stopped-crawl.log"
    command = crawl_command(seeds, None, out, gateway.endpoint)
    before = gateway.stats()["calls"]["total"]
    returncode = stop_when(
        command, lambda: gateway.stats()["calls"]["total"] - before >= CALLS // 3, log, signal.SIGTERM
    )
    text = log.read_text(errors="replace")
    assert returncode == 4, text[-3000:]
    assert text.strip().splitlines()[-1].endswith(
        f'its datasets went to {out}/_incomplete/, marked "complete": false, apart from finished runs; '
        "add -s JOBDIR=DIR to make a crawl resumable"
    ), text[-3000:]
    manifests = list((out / "_manifests").glob("*.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["complete"] is False and manifest["finish_reason"] == "shutdown"
    # Its rows and files are counted by format, as a finished run's are, and it has its report.
    assert set(manifest["rows"]) == {f["format"] for f in manifest["files"]} == {"parquet", "csv"}
    assert manifest["rows"]["parquet"]["seeds"] == SEEDS
    assert (out / "_reports" / f"{manifest['run_id']}.html").is_file()
    # Apart from finished runs: nothing in the trees readers glob, all of it under _incomplete/.
    assert not visible_files(out)
    assert_every_visible_file_is_whole(out / "_incomplete")
    assert sorted(p.relative_to(out).as_posix() for p in visible_files(out / "_incomplete")) == sorted(
        f["path"] for f in manifest["files"]
    )
    # Every seed has its row, those the stop cut short too, so seeds and matches agree.
    seeds = pq.read_table(out / "_incomplete" / "parquet" / "seeds").to_pandas()
    matches = pq.read_table(out / "_incomplete" / "parquet" / "matches").to_pandas()
    assert len(seeds) == SEEDS and set(matches["seed_id"]) <= set(seeds["seed_id"])
    unfinished = seeds[seeds["status"] == "unfinished"]
    assert len(unfinished) > 0 and set(unfinished["error_code"]) == {"shutdown"}


def test_readers_of_the_readmes_trees_see_only_finished_runs(
    gateway: SandboxProcess, seeds: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "datasets"
    before = gateway.stats()["calls"]["total"]
    stopped = stop_when(crawl_command(seeds, None, out, gateway.endpoint),
                        lambda: gateway.stats()["calls"]["total"] - before >= CALLS // 3, tmp_path / "stopped.log",
                        signal.SIGTERM)
    assert stopped == 4
    finished = run_crawl(str(seeds), *CRAWL_OPTIONS, dataset_dir=out, endpoint=gateway.endpoint)
    assert finished.returncode == 0, finished.tail()
    manifests = [json.loads(p.read_text()) for p in (out / "_manifests").glob("*.json")]
    assert sorted(m["complete"] for m in manifests) == [False, True]
    run_id = next(m["run_id"] for m in manifests if m["complete"])
    con = duckdb.connect()
    joined = con.execute(f"""
        SELECT DISTINCT m.run_id
        FROM read_parquet('{out}/parquet/matches/**/*.parquet', hive_partitioning = true) m
        JOIN read_parquet('{out}/parquet/products/**/*.parquet', hive_partitioning = true) p USING (run_id, num_iid)
    """).fetchall()
    assert joined == [(run_id,)]
    products = pd.read_parquet(out / "parquet" / "products", dtype_backend="pyarrow")
    assert set(products["run_id"]) == {run_id}
    for table in ("products", "matches", "seeds"):
        csv_runs = con.execute(f"SELECT DISTINCT run_id FROM read_csv('{out}/csv/{table}/**/*.csv')").fetchall()
        assert csv_runs == [(run_id,)], table
    # Every committed run's seeds cover its matches, the stopped one's too.
    for tree in (out, out / "_incomplete"):
        seeds_ids = set(pd.read_parquet(tree / "parquet" / "seeds")["seed_id"])
        assert set(pd.read_parquet(tree / "parquet" / "matches")["seed_id"]) <= seeds_ids and len(seeds_ids) == SEEDS
