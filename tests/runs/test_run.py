"""A run's lifecycle: tables built from staged rows, a commit cut short, locks and full disks in real crawls."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from datasets import REPO, assert_same_datasets, run_crawl, write_seed_photos

from items import ProductHit, SeedSummary
from items.schema import HITS, STAGED_SEEDS
from pipeline.runs.commit import apply_commit, finish_interrupted_commits
from pipeline.runs.identity import COMMIT_RECORD, JOURNAL_FILE, RunInfo, manifest_path, staging_dir
from pipeline.runs.locks import run_lock
from pipeline.runs.staging import StagedTable
from pipeline.runs.tables import build_tables
from sandbox.testing import SandboxProcess

RUN = RunInfo("20261125T101500Z-3fa2c1", datetime(2026, 11, 25, 10, 15, tzinfo=UTC), "2026-11-25")
SEEDS, PAGES = 12, 3  # --page-size 5 --max-results 15: three full pages a seed
CALLS = SEEDS * PAGES
OPTIONS = ("-a", f"pages={PAGES}", "-s", "CONCURRENT_REQUESTS=4")


# -- tables built from the staged rows -----------------------------------------------------------


def _hit(num_iid: int, seed: int, position: int) -> ProductHit:
    return ProductHit(
        run_id=RUN.run_id, seed_id=f"seed-{seed}", seed_rank=seed, num_iid=num_iid, page=1 + (position - 1) // 5,
        position=position, title=f"from seed {seed} at {position}", crawled_at=datetime(2026, 11, 25, tzinfo=UTC),
    )


def _stage(staging: Path, hits: list[ProductHit], seeds: int) -> None:
    staged_hits = StagedTable(staging / "hits.parquet", HITS, buffer_rows=4)
    for item in hits:
        staged_hits.add(item)
    staged_hits.close()
    staged_seeds = StagedTable(staging / "seeds.parquet", STAGED_SEEDS, buffer_rows=4)
    for rank in reversed(range(seeds)):  # seeds end in any order
        staged_seeds.add(SeedSummary(run_id=RUN.run_id, seed_id=f"seed-{rank}", seed_rank=rank, status="ok"))
    staged_seeds.close()


def test_products_go_to_the_first_seed_given_then_its_best_position_whatever_the_staging_order(tmp_path: Path) -> None:
    hits = [_hit(100 + n % 7, seed, position) for seed in range(4) for n, position in enumerate(range(1, 13), seed)]
    expected: dict[int, tuple[str, int]] = {}
    for item in hits:  # in the order given: the first seed, then the best position
        best = expected.get(item["num_iid"])
        if best is None or (item["seed_rank"], item["position"]) < (int(best[0][5:]), best[1]):
            expected[item["num_iid"]] = (item["seed_id"], item["position"])
    for attempt in range(3):
        random.Random(attempt).shuffle(hits)
        staging, out = tmp_path / f"s{attempt}", tmp_path / f"o{attempt}"
        _stage(staging, hits, seeds=4)
        files = build_tables(staging, out, RUN, ["parquet", "csv"], 0, "zstd")
        products = pq.read_table(out / "parquet/products/dt=2026-11-25/20261125T101500Z-3fa2c1-00001.parquet")
        rows = products.to_pylist()
        got = {row["num_iid"]: (row["first_seed_id"], int(row["title"].rsplit(" ", 1)[1])) for row in rows}
        assert got == expected
        assert products.column("num_iid").to_pylist() == sorted(expected)
        seeds = pq.read_table(out / "parquet/seeds/dt=2026-11-25/20261125T101500Z-3fa2c1-00001.parquet")
        assert seeds.column("seed_id").to_pylist() == [f"seed-{r}" for r in range(4)]  # in the order given
        assert {(f["table"], f["format"]): f["rows"] for f in files} == {
            (t, fmt): n for t, n in (("products", 7), ("matches", 48), ("seeds", 4), ("offers", 7))
            for fmt in ("parquet", "csv")
        }


def test_files_start_anew_every_batch_items_rows_and_an_empty_table_still_has_one(tmp_path: Path) -> None:
    _stage(tmp_path / "s", [_hit(100 + n, 0, n + 1) for n in range(10)], seeds=0)
    files = build_tables(tmp_path / "s", tmp_path / "o", RUN, ["parquet"], 4, "zstd")
    by_table: dict[str, list[int]] = {}
    for f in files:
        by_table.setdefault(f["table"], []).append(f["rows"])
    assert by_table == {"matches": [4, 4, 2], "products": [4, 4, 2], "seeds": [0], "offers": [4, 4, 2]}


# -- a commit cut short ----------------------------------------------------------------------------


def _interrupted_commit(root: Path) -> dict[str, Any]:
    """A run whose commit record is written and whose first two files were moved before a kill."""
    staging = staging_dir(root, RUN.run_id)
    _stage(staging, [_hit(100 + n, 0, n + 1) for n in range(10)], seeds=1)
    files = build_tables(staging, staging / "out", RUN, ["parquet", "csv"], 0, "zstd")
    record = {"run_id": RUN.run_id, "manifest": {"run_id": RUN.run_id, "complete": True, "files": files}}
    (staging / COMMIT_RECORD).write_text(json.dumps(record))
    for f in files[:2]:
        final = root / f["path"]
        final.parent.mkdir(parents=True, exist_ok=True)
        (staging / "out" / f["path"]).rename(final)
    return record


def test_a_commit_cut_short_is_finished_by_the_next_start(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    record = _interrupted_commit(root)
    assert finish_interrupted_commits(root) == [RUN.run_id]
    assert json.loads(manifest_path(root, RUN.run_id).read_text()) == record["manifest"]
    for f in record["manifest"]["files"]:
        assert (root / f["path"]).stat().st_size == f["bytes"]
    assert not staging_dir(root, RUN.run_id).exists()
    assert finish_interrupted_commits(root) == []  # nothing more to do
    apply_commit(root, record)  # and doing it again changes nothing
    assert len(list(root.rglob("*.parquet"))) == 4  # products, matches, seeds, offers


def test_the_interrupted_commit_of_a_run_another_crawl_holds_is_left_to_it(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _interrupted_commit(root)
    holder = run_lock(root, RUN.run_id)
    holder.acquire()
    try:
        assert finish_interrupted_commits(root) == []
        assert (staging_dir(root, RUN.run_id) / COMMIT_RECORD).exists()
    finally:
        holder.release()


def test_python_m_pipeline_run_finishes_interrupted_commits(tmp_path: Path) -> None:
    root = tmp_path / "datasets"
    _interrupted_commit(root)
    result = subprocess.run([sys.executable, "-m", "pipeline.runs", str(root)], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{root}: 1 interrupted commit(s) finished: {RUN.run_id}"
    assert manifest_path(root, RUN.run_id).exists()


# -- real crawls ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway() -> Iterator[SandboxProcess]:
    with SandboxProcess("--page-size", "5", "--max-results", "15", "--app", "test:test", "--app", "other:other",
                        "--fault-slow", "0.3", "--slow-seconds", "0.1") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("seeds")
    write_seed_photos(directory, SEEDS)
    return directory


@pytest.fixture(scope="module")
def reference(gateway: SandboxProcess, seeds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "datasets"
    run = run_crawl(str(seeds), *OPTIONS, dataset_dir=out, endpoint=gateway.endpoint)
    assert run.returncode == 0, run.tail()
    return out


def _command(seeds: Path, out: Path, endpoint: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}", "-s", f"DATASET_DIR={out}",
            "-s", f"IMAGESEARCH_ENDPOINT={endpoint}", *OPTIONS, "-s", "IMAGESEARCH_PICTURES=False", *options]


@pytest.mark.parametrize("shared", ["JOBDIR", "DATASET_RUN_ID"])
def test_a_second_crawl_on_the_same_jobdir_or_run_id_is_refused_and_the_first_finishes_untouched(
    shared: str, gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "datasets"
    setting = f"JOBDIR={tmp_path / 'job'}" if shared == "JOBDIR" else "DATASET_RUN_ID=nightly"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    log = tmp_path / "first.log"
    with log.open("wb") as stderr:  # paced to 10 calls a second: it lasts long enough for a second crawl to meet it
        first = subprocess.Popen(_command(seeds, out, gateway.endpoint, "-s", setting, "-s", "IMAGESEARCH_QUOTA=10/1"),
                                 cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while not list((out / "_staging").glob("*/hits.parquet")):  # the first crawl holds its locks
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        # The first crawl is stopped (SIGSTOP) while the second starts: on a loaded machine a second
        # crawl's start-up outlasted the first crawl's whole run. It holds its locks all the same.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            # The second crawl uses another app key: any call it made would show in the sandbox's stats.
            second = run_crawl(str(seeds), *OPTIONS, "-s", setting, dataset_dir=out, endpoint=gateway.endpoint,
                               env={"IMAGESEARCH_APP_KEY": "other", "IMAGESEARCH_APP_SECRET": "other"})
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert first.poll() is None, "the first crawl ended before the second met it"
        assert second.returncode == 5, second.tail()
        line = second.stderr.strip().splitlines()[-1]
        assert "in use by another crawl" in line and f"pid {first.pid}" in line, line
        assert "other" not in gateway.stats()["calls"]["by_app"]
        assert first.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        first.kill()
        first.wait()
    assert_same_datasets(reference, out)
    assert len(list((out / "_manifests").glob("*.json"))) == 1


@contextlib.contextmanager
def small_disk(path: Path, size: str, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (and ``inodes`` files and directories) at ``path``: a real filesystem that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the full-disk scenarios run as root (CI does)")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` bytes free; the filler file, to remove to free the space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as file:
        file.write(b"\0" * max(0, free - leave))
    return filler


def _visible(root: Path) -> list[Path]:
    return [p for fmt in ("parquet", "csv") for p in (root / fmt).rglob(f"*.{fmt}")]


def test_a_full_disk_under_dataset_dir_fails_the_run_and_the_same_command_finishes_it_once_space_is_back(
    gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path,
) -> None:
    jobdir = tmp_path / "job"
    with small_disk(tmp_path / "disk", "4m") as disk:
        out = disk / "datasets"
        filler = _fill(disk, leave=48 * 1024)
        before = gateway.stats()["calls"]["total"]
        failed = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert failed.returncode == 6, failed.tail()
        line = failed.stderr.strip().splitlines()[-1]
        assert "the run was not written (cannot write" in line and "No space left on device" in line, line
        assert "JOBDIR is kept: the same command resumes" in line
        assert "Traceback" not in failed.stderr
        assert not (out / "_manifests").exists() or not list((out / "_manifests").iterdir())
        assert not _visible(out), "nothing reaches the trees of a run that failed"
        assert (jobdir / JOURNAL_FILE).stat().st_size > 0
        filler.unlink()
        again = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert again.returncode == 0, again.tail()
        assert gateway.stats()["calls"]["total"] - before == CALLS, "no call twice: the journal had every answer"
        assert_same_datasets(reference, out)


def test_a_full_disk_under_jobdir_stops_the_crawl_keeps_jobdir_and_the_same_command_finishes_it(
    gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "datasets"
    with small_disk(tmp_path / "disk", "4m") as disk:
        jobdir = disk / "job"
        filler = _fill(disk, leave=40 * 1024)  # room for a few answers
        failed = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert failed.returncode == 6, failed.tail()
        line = failed.stderr.strip().splitlines()[-1]
        assert f"cannot write {jobdir / JOURNAL_FILE}: No space left on device" in line, line
        assert "Traceback" not in failed.stderr and not list(out.glob("_manifests/*"))
        assert "'imagesearch/seeds/failed'" not in failed.stderr, "a journal that cannot be written fails no seed"
        assert not list(_visible(out)) and (jobdir / "dataset_run.json").exists()
        saved = (jobdir / JOURNAL_FILE).read_bytes().count(b"\n")
        assert 0 < saved < CALLS
        filler.unlink()
        before = gateway.stats()["calls"]["total"]
        again = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert again.returncode == 0, again.tail()
        # Answers journaled before the disk filled are not asked again.
        assert gateway.stats()["calls"]["total"] - before == CALLS - saved
        assert again.stats["journal/replayed"] == saved
    assert_same_datasets(reference, out)


@pytest.mark.parametrize("inodes", [4, 5, 6])
def test_a_jobdir_out_of_inodes_either_fails_committing_nothing_or_commits_once_and_exits_0(
    gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path, inodes: int,
) -> None:
    """JOBDIR on a filesystem with room for ``inodes`` files and directories (its root and JOBDIR among
    them): too few for the lock, the run's identity and the journal, or just enough. Whichever, a crawl
    that exits non-zero has committed nothing, and one that exits 0 has committed the run once; neither
    prints a traceback, and with room again the same command ends with the undisturbed run's datasets,
    no answer paid for twice."""
    out = tmp_path / "datasets"
    with small_disk(tmp_path / "disk", "8m", inodes=inodes) as disk:
        jobdir = disk / "job"
        before = gateway.stats()["calls"]["total"]
        first = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert "Traceback" not in first.stderr and " ERROR: Error caught on signal handler" not in first.stderr
        if first.returncode != 0:
            assert first.returncode == 6, first.tail()
            line = first.stderr.strip().splitlines()[-1]
            assert "No space left on device" in line and "nothing was done" in line, line
            assert not list(out.glob("_manifests/*")) and not _visible(out)
            subprocess.run(["mount", "-o", "remount,nr_inodes=100000", str(disk)], check=True)
            again = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out,
                              endpoint=gateway.endpoint)
            assert again.returncode == 0, again.tail()
        manifests = [json.loads(m.read_text(encoding="utf-8")) for m in out.glob("_manifests/*.json")]
        assert [m["complete"] for m in manifests] == [True]
        assert gateway.stats()["calls"]["total"] - before == CALLS
        assert sorted(p.name for p in jobdir.iterdir()) == ["crawl.lock"], "a finished run leaves JOBDIR clear"
    assert_same_datasets(reference, out)


@pytest.mark.parametrize("spare", [4, 8, 12, 16, 20])
def test_a_disk_that_fills_up_during_the_commit_shows_readers_nothing_and_the_same_command_finishes_it(
    gateway: SandboxProcess, seeds: Path, reference: Path, tmp_path: Path, spare: int,
) -> None:
    """A filesystem out of inodes (files and directories) a few short of what the commit needs, at
    points from building the tables to writing the commit record and the manifest: exit 6, no file
    and no manifest visible; with room again, the same command commits the run, asking nothing again."""
    jobdir = tmp_path / "job"
    at_rest = len(list(reference.rglob("*"))) + 2  # a run's tree once committed, with the disk's root and DATASET_DIR
    with small_disk(tmp_path / "disk", "64m", inodes=at_rest + spare) as disk:
        out = disk / "datasets"
        before = gateway.stats()["calls"]["total"]
        failed = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert failed.returncode == 6, failed.tail()
        line = failed.stderr.strip().splitlines()[-1]
        assert "No space left on device" in line and "nothing committed" in line, line
        assert "Traceback" not in failed.stderr
        assert not _visible(out) and not list(out.glob("_manifests/*"))
        subprocess.run(["mount", "-o", "remount,nr_inodes=100000", str(disk)], check=True)
        again = run_crawl(str(seeds), *OPTIONS, "-s", f"JOBDIR={jobdir}", dataset_dir=out, endpoint=gateway.endpoint)
        assert again.returncode == 0, again.tail()
        assert gateway.stats()["calls"]["total"] - before == CALLS, "no call twice: the journal had every answer"
        assert_same_datasets(reference, out)
        assert not list((out / "_staging").iterdir())


def test_a_title_cut_in_the_middle_of_an_emoji_is_staged_with_a_replacement_character(tmp_path: Path) -> None:
    """A lone UTF-16 surrogate in an answer (``"\\ud83d"``, half an emoji) has no UTF-8 form: the row is
    kept with U+FFFD in its place, not the run lost."""
    catalogue = tmp_path / "catalogue"
    shutil.copytree(REPO / "configs" / "catalog.example", catalogue)
    lines = (catalogue / "catalog.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    lines[0] = lines[0].replace(json.dumps(first["title"], ensure_ascii=False)[:-1], json.dumps(first["title"],
                                ensure_ascii=False)[:-1] + "\\ud83d", 1)
    (catalogue / "catalog.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "datasets"
    with SandboxProcess("--catalog", str(catalogue / "catalog.jsonl")) as sandbox:
        run = run_crawl(str(catalogue / "images" / first["image"].split("/")[-1]), "-a", "pages=1",
                        dataset_dir=out, endpoint=sandbox.endpoint)
    assert run.returncode == 0, run.tail()
    products = pq.read_table(next((out / "parquet" / "products").rglob("*.parquet"))).to_pylist()
    titles = {row["num_iid"]: row["title"] for row in products}
    assert titles[first["num_iid"]] == first["title"] + "\ufffd"
    assert len(titles) == run.manifest()["rows"]["parquet"]["products"] > 1


def test_the_staging_a_killed_crawl_left_is_removed_by_the_next_start(
    gateway: SandboxProcess, seeds: Path, tmp_path: Path,
) -> None:
    """Without JOBDIR a killed run is never resumed (the next crawl is a new run): its staged rows and
    downloaded images would stay for good. The next start on that DATASET_DIR removes them."""
    out = tmp_path / "datasets"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    killed = subprocess.Popen(_command(seeds, out, gateway.endpoint, "-s", "IMAGESEARCH_QUOTA=10/1"), cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list((out / "_staging").glob("*/hits.parquet")):
            assert killed.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        killed.kill()
        killed.wait()
    [left] = list((out / "_staging").iterdir())
    run = run_crawl(str(seeds), *OPTIONS, dataset_dir=out, endpoint=gateway.endpoint)
    assert run.returncode == 0, run.tail()
    assert not (out / "_staging").exists() or not list((out / "_staging").iterdir()), "the killed run's staging stays"
    assert f"Removed the staging of run {left.name}" in run.stderr
    assert [m.stem for m in (out / "_manifests").glob("*.json")] == [run.manifest()["run_id"]]
