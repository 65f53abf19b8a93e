"""A whole crawl under a short gateway quota: IMAGESEARCH_QUOTA paces calls so the quota is never met,
and a pacer set too fast still ends with every seed searched, by waiting out the gateway's bans."""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from datasets import load_dataset, photos_fixture, run_crawl, stop_when

from sandbox.testing import SandboxProcess

QUOTA_CALLS, QUOTA_SECONDS = 10, 2
#: One call per seed (pages=1): 35 calls need 4 windows of 10 calls per 2 s.
SEEDS = 35
WINDOWS = -(-SEEDS // QUOTA_CALLS)
ONE_PAGE = ("-a", "pages=1", "-s", "DATASET_FORMATS=parquet")


photos = photos_fixture(SEEDS)


@pytest.fixture
def short_quota_sandbox() -> SandboxProcess:
    with SandboxProcess("--app", f"test:test:{QUOTA_CALLS}/{QUOTA_SECONDS}") as sandbox:
        yield sandbox


def _seconds(manifest: dict[str, object]) -> float:
    started = datetime.fromisoformat(str(manifest["started_at"]))
    return (datetime.fromisoformat(str(manifest["finished_at"])) - started).total_seconds()


def _assert_every_seed_ok(dataset_dir: Path) -> None:
    seeds = load_dataset(dataset_dir)["seeds"]
    assert len(seeds) == SEEDS and seeds["status"].eq("ok").all(), seeds[seeds["status"] != "ok"].to_string()


def test_paced_crawl_never_meets_the_quota(tmp_path: Path, photos: Path, short_quota_sandbox: SandboxProcess) -> None:
    result = run_crawl(str(photos), *ONE_PAGE, "-s", f"IMAGESEARCH_QUOTA={QUOTA_CALLS}/{QUOTA_SECONDS}",
                       dataset_dir=tmp_path / "datasets", endpoint=short_quota_sandbox.endpoint)
    sandbox_stats = short_quota_sandbox.stats()
    assert result.returncode == 0, result.tail()
    _assert_every_seed_ok(tmp_path / "datasets")
    assert sandbox_stats["quota_refused"] == 0, sandbox_stats
    assert sandbox_stats["calls"]["total"] == SEEDS
    stats = result.stats
    assert stats["pacing/calls"] == SEEDS
    # Calls beyond the first window waited for their slot (at least one per later window); none met a quota answer.
    assert stats["pacing/waits"] >= WINDOWS - 1, stats
    assert stats.get("pacing/quota_errors", 0) == 0 and stats.get("imagesearch/throttled", 0) == 0, stats
    # The calls really spread over the windows they need (the last one opens (WINDOWS-1) x 2 s in).
    assert _seconds(result.manifest()) >= (WINDOWS - 1) * QUOTA_SECONDS


def test_pacer_set_too_fast_meets_quota_errors_and_still_gets_every_seed(
    tmp_path: Path, photos: Path, short_quota_sandbox: SandboxProcess
) -> None:
    result = run_crawl(str(photos), *ONE_PAGE, "-s", f"IMAGESEARCH_QUOTA={10 * QUOTA_CALLS}/{QUOTA_SECONDS}",
                       dataset_dir=tmp_path / "datasets", endpoint=short_quota_sandbox.endpoint)
    sandbox_stats = short_quota_sandbox.stats()
    assert result.returncode == 0, result.tail()
    _assert_every_seed_ok(tmp_path / "datasets")
    refused = sandbox_stats["quota_refused"]
    assert refused > 0, sandbox_stats
    assert sandbox_stats["calls"]["total"] == SEEDS + refused
    stats = result.stats
    assert stats["pacing/quota_errors"] == stats["imagesearch/throttled"] == refused, stats
    # Each refusal cost exactly one more call (asserted above), and the ban holds every call of the
    # app key, not only the refused one: per window only the calls already on the wire or released
    # together when the ban ends (at most CONCURRENT_REQUESTS = 8) can be refused.
    assert refused <= WINDOWS * 8, (refused, stats)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_while_calls_wait_for_the_quota_ends_at_once_and_spends_no_call(
    tmp_path: Path, photos: Path, short_quota_sandbox: SandboxProcess, stop: signal.Signals,
) -> None:
    """Under a real quota a call can wait most of an hour for its slot; Ctrl-C must not wait with it."""
    window = 600  # the 11th call's slot is 10 minutes away
    jobdir, log = tmp_path / "job", tmp_path / "crawl.log"
    command = [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={photos}", *ONE_PAGE,
               "-s", f"IMAGESEARCH_QUOTA={QUOTA_CALLS}/{window}", "-s", f"JOBDIR={jobdir}",
               "-s", f"DATASET_DIR={tmp_path / 'datasets'}",
               "-s", f"IMAGESEARCH_ENDPOINT={short_quota_sandbox.endpoint}", "-s", "IMAGESEARCH_PICTURES=False"]

    def calls_wait_for_their_slot() -> bool:
        if short_quota_sandbox.stats()["calls"]["total"] < QUOTA_CALLS:
            return False
        time.sleep(1)  # the window's calls went out: the next ones now wait for a slot 10 minutes away
        return True

    # Waiting out the slot would take 10 minutes: the stop must come long before.
    returncode = stop_when(command, calls_wait_for_their_slot, log, stop, timeout=window / 4)
    text = log.read_text(errors="replace")
    assert returncode == 4, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert short_quota_sandbox.stats()["calls"]["total"] == QUOTA_CALLS  # nothing sent after the stop
    assert text.strip().splitlines()[-1] == (
        "scrapy crawl imagesearch: the crawl stopped before it finished (shutdown):"
        " run the same command again to resume it"
    )
