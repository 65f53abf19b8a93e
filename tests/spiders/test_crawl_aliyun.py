"""Whole aliyun crawls against the sandbox: its QPS limit, a wrong AccessKey secret and pictures it cannot take,
each ending as the gateway's error table says.

Every test runs the real ``scrapy crawl imagesearch -s IMAGESEARCH_GATEWAY=aliyun`` in a subprocess
against a sandbox subprocess on loopback (Alibaba Cloud's RPC at ``/``).
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import load_dataset, photos_fixture, run_crawl, write_seed_photos
from PIL import Image

from sandbox.testing import SandboxProcess

KEY, SECRET = "LTAI5tCrawlKey", "aliyun+crawl/secret=9"
SEEDS = 12

photos = photos_fixture(SEEDS)


def _crawl(sb: SandboxProcess, seeds: str | Path, out: Path, *options: str, secret: str = SECRET):  # type: ignore[no-untyped-def]
    return run_crawl(str(seeds), "-a", "pages=1", "-s", "IMAGESEARCH_GATEWAY=aliyun", *options, dataset_dir=out,
                     endpoint=sb.url, env={"IMAGESEARCH_APP_KEY": KEY, "IMAGESEARCH_APP_SECRET": secret})


def test_paced_at_the_products_qps_the_sandbox_never_throttles(photos: Path, tmp_path: Path) -> None:
    # The sandbox holds the product's default, 5 searches a second; the gateway's default quota is 5/1.
    with SandboxProcess("--app", f"{KEY}:{SECRET}") as sb:
        # No listing pictures: the sandbox's one reactor serves the CDN too (the real service does not),
        # and pictures it renders meanwhile would hold calls back, to count them later in a burst.
        run = _crawl(sb, photos, tmp_path / "out", "-s", "IMAGESEARCH_PICTURES=False")
        stats = sb.stats()
    assert run.returncode == 0, run.tail()
    assert stats["quota_refused"] == 0 and stats["errors"] == {}
    assert stats["calls"]["by_method"] == {"SearchByPic": SEEDS}
    assert run.stats["pacing/quota"] == "5/1"
    # 12 calls at 5 per 1.2 s (the window and its margin) span two windows at least.
    assert stats["calls"]["last_at"] - stats["calls"]["first_at"] >= 2.0
    assert set(load_dataset(tmp_path / "out")["seeds"]["status"]) == {"ok"}


def test_unpaced_its_throttling_is_waited_out_and_every_seed_is_searched(photos: Path, tmp_path: Path) -> None:
    with SandboxProcess("--app", f"{KEY}:{SECRET}", "--aliyun-qps", "2") as sb:
        run = _crawl(sb, photos, tmp_path / "out", "-s", "IMAGESEARCH_QUOTA=")
        stats = sb.stats()
    assert run.returncode == 0, run.tail()
    assert stats["quota_refused"] > 0 and set(stats["errors"]) == {"Throttling.User"}
    # Every refused call was sent again after the wait the answer named (x-acs-retry-after, under a second).
    assert stats["calls"]["total"] - stats["quota_refused"] == SEEDS
    assert run.stats["imagesearch/throttled"] == stats["quota_refused"]
    assert "the account's searches per second" in run.stderr
    seeds = load_dataset(tmp_path / "out")["seeds"]
    assert set(seeds["status"]) == {"ok"} and len(seeds) == SEEDS


def _everything_written(root: Path, *texts: str) -> str:
    found = list(texts)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(found)


def test_a_wrong_accesskey_secret_stops_at_the_first_call_with_what_to_fix(photos: Path, tmp_path: Path) -> None:
    with SandboxProcess("--app", f"{KEY}:{SECRET}") as sb:
        run = _crawl(sb, photos, tmp_path / "out", "-s", "LOG_LEVEL=DEBUG", secret="not-the-secret")
        calls = sb.stats()["calls"]["total"]
    assert run.returncode == 3, run.tail()
    assert calls == 1, "one refusal, then nothing more is sent"
    errors = [line for line in run.stderr.splitlines() if "] ERROR:" in line]
    assert len(errors) == 1 and "SignatureDoesNotMatch" in errors[0], run.tail()
    assert "refused the credentials" in errors[0] and "check IMAGESEARCH_APP_SECRET" in errors[0]
    assert "Traceback" not in run.stderr
    seeds = load_dataset(tmp_path / "out" / "_incomplete")["seeds"]
    assert len(seeds) == SEEDS and set(seeds["error_code"]) == {"SignatureDoesNotMatch"}
    written = _everything_written(tmp_path / "out", run.stdout, run.stderr)
    for secret in ("not-the-secret", SECRET):
        assert secret not in written
    assert "Signature=" not in written  # the Authorization header of the signed call went nowhere but the network


@pytest.fixture(scope="module")
def broken_picture_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A web server on loopback serving ``broken.jpg``: bytes that are no picture."""
    root = tmp_path_factory.mktemp("cdn")
    (root / "broken.jpg").write_bytes(b"<html>this was a picture once</html>" * 20)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/broken.jpg"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("signature", ["v3", "v2"])
def test_a_picture_the_service_cannot_take_fails_its_seed_only_and_one_it_would_refuse_costs_no_call(
    broken_picture_host: str, tmp_path: Path, signature: str,
) -> None:
    root = tmp_path / "seeds"
    good = write_seed_photos(root, 3)
    # Too small for the service (its sides are 100 to 4096 pixels), though Pillow reads it well: no call
    # is spent on it.
    Image.new("RGB", (80, 60), (30, 120, 200)).save(root / "thumbnail.jpg", "JPEG")
    # A URL on a host taken for the platform's CDN is searched as it is (SearchByUrl): the service
    # downloads it and finds no picture.
    seeds = f"{root},{broken_picture_host}"
    with SandboxProcess("--app", f"{KEY}:{SECRET}") as sb:
        run = _crawl(sb, seeds, tmp_path / "out", "-s", "IMAGESEARCH_CDN_HOSTS=127.0.0.1",
                     "-s", f"IMAGESEARCH_ALIYUN_SIGNATURE={signature}")
        by_method = sb.stats()["calls"]["by_method"]
    assert run.returncode == 0, run.tail()
    assert by_method == {"SearchByPic": 3, "SearchByUrl": 1}  # the refused URL is one call: not retried
    seeds_table = load_dataset(tmp_path / "out")["seeds"].set_index("source")
    assert list(seeds_table.loc[[str(p) for p in good], "status"]) == ["ok"] * 3
    thumbnail = seeds_table.loc[str(root / "thumbnail.jpg")]
    assert (thumbnail["status"], thumbnail["error_code"]) == ("rejected", "image_too_small")
    assert "80x60" in thumbnail["error_msg"] and "UnsupportedPicPixels" in thumbnail["error_msg"]
    broken = seeds_table.loc[broken_picture_host]
    assert (broken["status"], broken["error_code"]) == ("failed", "InvalidPicFormat")
    assert "Traceback" not in run.stderr


def test_an_error_answer_with_a_5xx_status_is_sent_no_more_often_than_its_action_says(
    photos: Path, tmp_path: Path,
) -> None:
    # Every call meets a server error (503 ServiceUnavailable or 500 InternalError); a user's table says
    # such a seed is failed at once: no retry of ours, nor of Scrapy's RetryMiddleware for the 5xx status.
    actions = '{"ServiceUnavailable": "seed_error", "InternalError*": "seed_error"}'
    with SandboxProcess("--app", f"{KEY}:{SECRET}", "--fault-remote", "1.0") as sb:
        run = _crawl(sb, photos, tmp_path / "out", "-s", f"IMAGESEARCH_ERROR_ACTIONS={actions}")
        stats = sb.stats()
    assert run.returncode == 0, run.tail()
    assert stats["calls"]["total"] == SEEDS == stats["faults"]["remote"]
    seeds = load_dataset(tmp_path / "out")["seeds"]
    assert set(seeds["status"]) == {"failed"} and set(seeds["error_code"]) <= {"ServiceUnavailable", "InternalError"}
    assert "retry/count" not in run.stats
