"""``scrapy serve`` when the gateway is slow, bans, or Redis goes away, and when it cannot start: the
caller is answered in bounded time with a status that says when to come back, and the service lives on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import REPO, free_port, write_seed_photos
from serving import ServeProcess

from sandbox.testing import RedisServer, SandboxProcess


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_seed_photos(tmp_path_factory.mktemp("photos"), 6, size=160)


def test_a_gateway_slower_than_the_search_timeout_is_a_504_not_a_hung_connection(
    photos: list[Path], tmp_path: Path,
) -> None:
    # Every answer is held back 30 s; the search may take 3 s in all.
    with SandboxProcess("--fault-slow", "1", "--slow-seconds", "30") as slow, ServeProcess(
        slow.endpoint, "-s", "IMAGESEARCH_QUOTA=", "-s", "IMAGESEARCH_SERVE_TIMEOUT=3", cache_dir=tmp_path,
    ) as service:
        status, headers, body = service.post_photo(photos[0].read_bytes())
        log = service.text()
    assert status == 504 and body["error"] == "gateway_timeout", body
    assert int(headers["Retry-After"]) >= 1
    assert "Traceback" not in log


def test_a_ban_longer_than_the_search_is_a_429_with_the_gateways_code_and_no_call_is_sent_again(
    photos: list[Path], tmp_path: Path,
) -> None:
    # The key allows 1 call a minute and the service was not told (no IMAGESEARCH_QUOTA): the gateway's
    # quota error bans calls for the rest of the minute, longer than the search may wait.
    with SandboxProcess("--app", "test:test:1/60") as strict, ServeProcess(
        strict.endpoint, "-s", "IMAGESEARCH_QUOTA=", "-s", "IMAGESEARCH_SERVE_TIMEOUT=10", cache_dir=tmp_path,
    ) as service:
        status, _, first = service.post_photo(photos[0].read_bytes())
        assert status == 200 and first["calls"] == 1, first
        status, headers, banned = service.post_photo(photos[1].read_bytes())
        # The call limit, in real TOP's code table or the article's.
        assert status == 429 and banned["error"] in ("7", "16"), banned
        assert int(headers["Retry-After"]) > 10
        # The ban is known now: the next caller is told at once, and nothing is sent.
        status, headers, told = service.post_photo(photos[2].read_bytes())
        assert status == 429 and told["error"] == "quota_wait" and int(headers["Retry-After"]) >= 1, told
        stats = strict.stats()
        log = service.text()
    assert stats["calls"]["total"] == 2 and stats["quota_refused"] == 1, stats
    assert "Traceback" not in log


def test_redis_gone_is_a_503_for_that_search_and_the_service_carries_on_when_it_is_back(
    photos: list[Path], tmp_path: Path,
) -> None:
    redis = RedisServer().start()
    port = redis.port
    try:
        with SandboxProcess() as sandbox, ServeProcess(
            sandbox.endpoint, "-s", "IMAGESEARCH_QUOTA=20/2", "-s", f"IMAGESEARCH_REDIS_URL={redis.url}",
            cache_dir=tmp_path,
        ) as service:
            status, _, first = service.post_photo(photos[0].read_bytes())
            assert status == 200 and first["calls"] == 1, first
            redis.stop()
            status, headers, gone = service.post_photo(photos[1].read_bytes())
            assert status == 503 and gone["error"] == "redis_unavailable", gone
            assert int(headers["Retry-After"]) >= 1
            redis = RedisServer(port=port).start()  # back, empty, where it was
            time.sleep(int(headers["Retry-After"]))  # as a caller told to come back does
            status, _, back = service.post_photo(photos[1].read_bytes())
            assert status == 200 and back["calls"] == 1, back
            _, _, health = service.request("GET", "/healthz")
            log = service.text()
    finally:
        redis.stop()
    assert json.loads(health)["status"] == "ok"
    assert json.loads(health)["cache"]["errors"] >= 1  # the cache read while Redis was gone: a miss
    assert "did not answer" in log or "Redis" in log
    assert "Traceback" not in log


def test_a_gateway_down_when_the_service_starts_is_a_502_each_time_until_it_answers(
    photos: list[Path], tmp_path: Path,
) -> None:
    # Nothing listens at the endpoint yet: the first call (which goes before the gateway has answered
    # once, the others held back) fails; the next caller must not be held back for ever behind it.
    port = free_port()
    with ServeProcess(f"http://127.0.0.1:{port}/router/rest", "-s", "IMAGESEARCH_QUOTA=", "-s",
                      "IMAGESEARCH_SERVE_TIMEOUT=20", "-s", "IMAGESEARCH_RETRY_BACKOFF=0.1",
                      cache_dir=tmp_path) as service:
        for photo in photos[:2]:
            status, _, down = service.post_photo(photo.read_bytes())
            assert status == 502 and down["error"] == "gateway_unreachable", down
        with SandboxProcess("--port", str(port)):
            status, _, up = service.post_photo(photos[2].read_bytes())
        log = service.text()
    assert status == 200 and up["calls"] == 1 and up["matches"], up
    assert "Traceback" not in log


@pytest.mark.parametrize("setting", ["IMAGESEARCH_SERVE_CACHE_DIR={file}", "IMAGESEARCH_SERVE_TIMEOUT=0"])
def test_a_service_that_cannot_start_says_why_in_one_line_and_exits_2(setting: str, tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory\n")
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "serve", "-s", "IMAGESEARCH_SERVE_PORT=0",
         "-s", setting.format(file=occupied / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("scrapy serve: error:")]
    assert len(errors) == 1 and setting.split("=")[0] in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


