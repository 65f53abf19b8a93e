"""A whole crawl through an unreliable gateway: transient faults are retried, and the datasets come out the same.

The real ``scrapy crawl imagesearch`` runs in a subprocess against sandboxes with injected faults
(HTTP 5xx, broken bodies, dropped connections, slow answers). This file is not named
``test_faults.py``: ``tests/sandbox/test_faults.py`` holds that module name under pytest's
default import mode (neither directory is a package).
"""

from __future__ import annotations

from pathlib import Path

from datasets import assert_same_datasets, free_port, load_dataset, photos_fixture, run_crawl, write_seed_photos

from sandbox.testing import SandboxProcess

SEEDS = 200
#: Two full pages for every seed: 2 x SEEDS search calls before retries.
SANDBOX_PAGES = ("--page-size", "5", "--max-results", "10")
#: The issue's fault mix. Per attempt, a call fails (5xx, garbage or drop: tried in that order,
#: each on its own die) with p = 1 - 0.90 x 0.95 x 0.95 = 0.188; slow answers (1 s) only delay it.
FAULTS = (
    "--fault-5xx", "0.10", "--fault-garbage", "0.05", "--fault-drop", "0.05",
    "--fault-slow", "0.02", "--slow-seconds", "1", "--fault-seed", "7",
)
#: Fast crawls: no quota pacing (the sandbox's default quota is 1000 calls/hour, far above
#: what one test sends), short backoff, and only the Parquet tree the comparison reads.
#: RETRY_TIMES is deliberately left at its default: that default is what is under test.
FAST = (
    "-a", "pages=2", "-s", "IMAGESEARCH_QUOTA=", "-s", "IMAGESEARCH_RETRY_BACKOFF=0.05",
    "-s", "CONCURRENT_REQUESTS=16", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=16",
    "-s", "DATASET_FORMATS=parquet",
)


photos = photos_fixture(SEEDS)


def test_faulty_gateway_gives_every_seed_and_the_same_datasets(tmp_path: Path, photos: Path) -> None:
    # Both sandboxes listen on the same port, one after the other: listings carry picture URLs
    # on the sandbox's own host, and those must not differ between the two datasets.
    port = str(free_port())
    with SandboxProcess(*SANDBOX_PAGES, "--port", port) as clean_sandbox:
        clean = run_crawl(str(photos), *FAST, dataset_dir=tmp_path / "clean", endpoint=clean_sandbox.endpoint)
        assert clean.returncode == 0, clean.tail()
        assert clean_sandbox.stats()["calls"]["total"] == 2 * SEEDS
    with SandboxProcess(*SANDBOX_PAGES, *FAULTS, "--port", port) as faulty_sandbox:
        faulty = run_crawl(str(photos), *FAST, dataset_dir=tmp_path / "faulty", endpoint=faulty_sandbox.endpoint)
        sandbox_stats = faulty_sandbox.stats()
    assert faulty.returncode == 0, faulty.tail()

    # The faults really happened, and every one cost a retry (never a seed).
    faults = sandbox_stats["faults"]
    assert all(faults[kind] > 0 for kind in ("5xx", "garbage", "drop", "slow")), faults
    failed_attempts = faults["5xx"] + faults["garbage"] + faults["drop"]
    stats = faulty.stats
    assert stats["retry/count"] == failed_attempts, stats
    assert "retry/max_reached" not in stats, stats
    assert sandbox_stats["calls"]["total"] == stats["imagesearch/calls"] == 2 * SEEDS + failed_attempts

    seeds = load_dataset(tmp_path / "faulty")["seeds"]
    assert len(seeds) == SEEDS and seeds["seed_id"].is_unique
    assert seeds["status"].eq("ok").all(), seeds[seeds["status"] != "ok"].to_string()
    assert seeds["pages_fetched"].eq(2).all() and seeds["items_found"].eq(10).all()
    assert stats["imagesearch/seeds/ok"] == SEEDS
    assert_same_datasets(tmp_path / "clean", tmp_path / "faulty")


def test_seed_whose_calls_always_fail_is_recorded_failed_and_the_crawl_ends_well(tmp_path: Path) -> None:
    """Once the gateway has answered, a seed whose call fails every retry is a failed seed, not a stop.

    Half the attempts fail (fault dice seeded, one call at a time so the draw is the same every
    run): with RETRY_TIMES=1 a quarter of the seeds lose both tries. A gateway that never answers
    at all stops the crawl instead (tests/spiders/test_crawl_unreachable.py).
    """
    photos = tmp_path / "photos"
    write_seed_photos(photos, 12)
    with SandboxProcess(*SANDBOX_PAGES, "--fault-5xx", "0.5", "--fault-seed", "1") as sandbox:
        result = run_crawl(str(photos), *FAST, "-a", "pages=1", "-s", "RETRY_TIMES=1", "-s", "CONCURRENT_REQUESTS=1",
                           dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
        sandbox_stats = sandbox.stats()
    assert result.returncode == 0, result.tail()
    assert "Traceback" not in result.stderr
    seeds = load_dataset(tmp_path / "datasets")["seeds"]
    assert len(seeds) == 12, seeds.to_string()  # never dropped
    failed = seeds[seeds["status"] == "failed"]
    assert 0 < len(failed) < 12, seeds.to_string()
    for row in failed.itertuples():
        assert row.error_code in ("http_500", "http_502", "http_503"), seeds.to_string()
        assert row.error_msg == f"HTTP {row.error_code[5:]} after 1 retries", seeds.to_string()
        assert row.pages_fetched == 0 and row.items_found == 0
    assert seeds.loc[seeds["status"] != "failed", "status"].eq("ok").all(), seeds.to_string()
    assert result.stats["imagesearch/seeds/failed"] == len(failed)
    assert sandbox_stats["faults"]["5xx"] == result.stats["retry/count"] + len(failed)
    assert result.stats["finish_reason"] == "finished"
