"""A crawl on a pool of app keys (IMAGESEARCH_APP_KEYS), in one process: the calls are spread over the keys,
each signed with its own secret, and a key whose day is spent is set aside while another has calls left."""

from __future__ import annotations

from pathlib import Path

from datasets import load_dataset, photos_fixture, run_crawl

from sandbox.testing import SandboxProcess

SEEDS = 12
SECRETS = {"IMAGESEARCH_APP_SECRET_ALPHA": "alpha-secret", "IMAGESEARCH_APP_SECRET_BETA": "beta-secret"}


photos = photos_fixture(SEEDS)


def test_a_key_that_spends_its_day_is_set_aside_and_the_pool_carries_on(tmp_path: Path, photos: Path) -> None:
    with SandboxProcess("--app", "alpha:alpha-secret:1000/3600:5", "--app", "beta:beta-secret:1000/3600") as sandbox:
        result = run_crawl(str(photos), "-a", "pages=1", "-s", "IMAGESEARCH_APP_KEYS=alpha,beta",
                           "-s", "DATASET_FORMATS=parquet", dataset_dir=tmp_path / "datasets",
                           endpoint=sandbox.endpoint, env=SECRETS)
        stats = sandbox.stats()
    assert result.returncode == 0, result.tail()
    seeds = load_dataset(tmp_path / "datasets")["seeds"]
    assert len(seeds) == SEEDS and seeds["status"].eq("ok").all(), seeds.to_string()
    # Alpha made its 5 calls of the day; the calls it was refused (at most those on the wire together)
    # went again on beta, which made the rest. No secret reached the log.
    assert stats["calls"]["by_app"]["alpha"] == 5 + stats["daily_refused"], stats
    assert 1 <= stats["daily_refused"] <= 8, stats
    assert stats["calls"]["by_app"]["beta"] == SEEDS - 5, stats
    assert result.stats["pacing/keys_spent_today"] == 1
    assert "App key1 has spent its calls for the day" in result.stderr
    assert "alpha-secret" not in result.stderr and "beta-secret" not in result.stderr


def test_when_every_key_of_the_pool_has_spent_its_day_the_crawl_stops_resumable(tmp_path: Path, photos: Path) -> None:
    with SandboxProcess("--app", "alpha:alpha-secret:1000/3600:3", "--app", "beta:beta-secret:1000/3600:3") as sandbox:
        result = run_crawl(str(photos), "-a", "pages=1", "-s", "IMAGESEARCH_APP_KEYS=alpha,beta",
                           "-s", f"JOBDIR={tmp_path / 'job'}", dataset_dir=tmp_path / "datasets",
                           endpoint=sandbox.endpoint, env=SECRETS)
        stats = sandbox.stats()
    assert result.returncode == 4, result.tail()
    assert "the gateway's quota for the day is spent" in result.stderr, result.tail()
    assert stats["calls"]["by_app"]["alpha"] >= 3 and stats["calls"]["by_app"]["beta"] >= 3, stats
