"""``scrapy serve`` with IMAGESEARCH_REDIS_URL, on a real redis-server: the app key's quota is shared
with a nightly crawl on the same key, and the answers' cache lives in Redis (so it outlives the service)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from datasets import REPO, load_dataset, write_seed_photos
from serving import ServeProcess

from pipeline.serve.cache import REDIS_PREFIX
from sandbox.testing import RedisServer, SandboxProcess

SEEDS = 16


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_seed_photos(tmp_path_factory.mktemp("photos"), SEEDS + 9, size=160)  # 8 for the loop, 1 after


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_a_service_and_a_crawl_on_one_key_share_its_quota_through_redis(
    photos: list[Path], tmp_path: Path, redis_server: RedisServer,
) -> None:
    calls, seconds = 6, 3
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for photo in photos[:SEEDS]:
        (seeds / photo.name).write_bytes(photo.read_bytes())
    # A margin of 1 s on each window: the jitter of a loaded 2-core machine between booking and arrival.
    quota = ["-s", f"IMAGESEARCH_QUOTA={calls}/{seconds}", "-s", "IMAGESEARCH_QUOTA_MARGIN=1",
             "-s", f"IMAGESEARCH_REDIS_URL={redis_server.url}"]
    with SandboxProcess("--app", f"test:test:{calls}/{seconds}") as sandbox, ServeProcess(
        sandbox.endpoint, *quota, "-s", "IMAGESEARCH_SERVE_MAX_WAIT=1", cache_dir=tmp_path / "cache",
    ) as service:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
        log = tmp_path / "crawl.log"
        with log.open("wb") as stderr:
            crawl = subprocess.Popen(
                [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}", "-a", "pages=1",
                 "-s", f"DATASET_DIR={tmp_path / 'datasets'}", "-s", f"IMAGESEARCH_ENDPOINT={sandbox.endpoint}",
                 "-s", "DATASET_FORMATS=parquet", "-s", "IMAGESEARCH_PICTURES=False", *quota],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL)
        # While the crawl spends the key's windows, the app's shoppers search: each is answered within
        # the service's wait, or told when to come back (the crawl's bookings count against them).
        while sandbox.stats()["calls"]["total"] == 0 and crawl.poll() is None:
            time.sleep(0.05)
        answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        with ThreadPoolExecutor(4) as pool:
            while crawl.poll() is None and len(answers) < 24:
                batch = [photos[SEEDS + (len(answers) + i) % 8] for i in range(4)]
                answers += pool.map(lambda photo: service.post_photo(photo.read_bytes()), batch)
        assert crawl.wait(timeout=240) == 0, log.read_text(errors="replace")[-4000:]
        # The crawl done, a caller that honours Retry-After is served by a call of its own.
        for _ in range(5):
            status, headers, later = service.post_photo(photos[-1].read_bytes())
            if status != 429:
                break
            time.sleep(int(headers["Retry-After"]))
        assert status == 200 and later["calls"] == 1, later
        answers.append((status, headers, later))
        stats = sandbox.stats()
        service_log = service.text()
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429} and 429 in statuses, statuses
    for status, headers, body in answers:
        if status == 429:
            assert body["error"] == "quota_wait" and int(headers["Retry-After"]) >= 1, (headers, body)
    # One quota for both processes: the sandbox refused no call of either.
    assert stats["quota_refused"] == 0, stats
    spent_by_service = sum(body["calls"] for status, _, body in answers if status == 200)
    assert stats["calls"]["total"] == SEEDS + spent_by_service, (stats, spent_by_service)
    datasets = load_dataset(tmp_path / "datasets")
    assert len(datasets["seeds"]) == SEEDS and datasets["seeds"]["status"].eq("ok").all()
    assert "Traceback" not in service_log + log.read_text(errors="replace")


def test_the_redis_cache_is_shared_and_survives_the_service(
    photos: list[Path], tmp_path: Path, redis_server: RedisServer,
) -> None:
    photo = photos[SEEDS].read_bytes()
    options = ("-s", "IMAGESEARCH_QUOTA=", "-s", f"IMAGESEARCH_REDIS_URL={redis_server.url}")
    with SandboxProcess() as sandbox:
        with ServeProcess(sandbox.endpoint, *options, cache_dir=tmp_path / "one") as first:
            status, _, result = first.post_photo(photo)
            assert status == 200 and result["calls"] == 1, result
        keys = redis_server.client().keys(REDIS_PREFIX + "*")
        assert len(keys) == 1 and 0 < redis_server.client().ttl(keys[0]) <= 86400, keys
        before = sandbox.stats()["calls"]["total"]
        # Another service process, with a cache directory of its own: the answer comes from Redis.
        with ServeProcess(sandbox.endpoint, *options, cache_dir=tmp_path / "two") as second:
            status, _, again = second.post_photo(photo)
        assert status == 200 and again["calls"] == 0 and again["pages_cached"] == 1, again
        assert sandbox.stats()["calls"]["total"] == before
    assert again["matches"] == result["matches"]
    assert not (tmp_path / "one").exists() or not any((tmp_path / "one").iterdir())  # nothing on disk
