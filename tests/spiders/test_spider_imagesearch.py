"""The real ``scrapy crawl imagesearch`` in a subprocess against sandboxes over loopback.

Items are read from an explicit ``-O items.jsonl`` feed so these tests do not depend on the
default dataset layout.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from sandbox.catalog import builtin_catalog
from sandbox.testing import SandboxProcess

REPO = Path(__file__).resolve().parents[2]
PAGE_SIZE = 5
MAX_RESULTS = 12
SEARCH, UPLOAD = "taobao.image.search", "taobao.upload.img"


@dataclass
class Crawl:
    returncode: int
    stdout: str
    stderr: str
    items: list[dict[str, Any]]
    seconds: float

    @property
    def summaries(self) -> dict[str, dict[str, Any]]:
        rows = [item for item in self.items if "status" in item]
        assert len(rows) == len({row["seed_id"] for row in rows}), "a seed was summarised twice"
        return {row["seed_id"]: row for row in rows}

    @property
    def hits(self) -> list[dict[str, Any]]:
        return [item for item in self.items if "status" not in item]

    def stat(self, name: str) -> Any:
        match = re.search(rf"'{re.escape(name)}': ([^,\n]+)", self.stderr)
        return json.loads(match.group(1).replace("'", '"')) if match else None

    def status_of(self, source_suffix: str) -> dict[str, Any]:
        (row,) = [row for row in self.summaries.values() if str(row["source"]).endswith(source_suffix)]
        return row


def crawl(tmp_path: Path, seeds: str, *options: str, env: dict[str, str] | None = None, feed: bool = True) -> Crawl:
    """``python -m scrapy crawl imagesearch -a seeds=...`` from the repository root."""
    out = tmp_path / "items.jsonl"
    command = [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}", *options]
    if feed:
        command += ["-O", str(out)]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    run_env.update(env or {})
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=120)
    items = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    return Crawl(result.returncode, result.stdout, result.stderr, items, time.monotonic() - started)


def against(sandbox: SandboxProcess, *options: str) -> tuple[str, ...]:
    return ("-s", f"IMAGESEARCH_ENDPOINT={sandbox.endpoint}", *options)


def expected_pages(total_results: int, pages: int) -> int:
    """Pages a search needs with the sandbox's full pages of PAGE_SIZE: the spider's stopping rule."""
    return max(1, min(pages, math.ceil(total_results / PAGE_SIZE)))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess("--page-size", str(PAGE_SIZE), "--max-results", str(MAX_RESULTS)) as process:
        yield process


@pytest.fixture(scope="module")
def catalog() -> Any:
    return builtin_catalog()


def _photo(catalog: Any, index: int) -> Image.Image:
    return catalog.products[index].image().convert("RGB")


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory, catalog: Any) -> Iterator[str]:
    """A local http.server with one product photo at /shoe.jpg: an external URL the spider must upload."""
    root = tmp_path_factory.mktemp("www")
    _photo(catalog, 900).save(root / "shoe.jpg", "JPEG", quality=90)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"  # not 127.0.0.1: that host is "the CDN" here
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _write_mix(root: Path, catalog: Any) -> None:
    """Good photos in odd encodings, a duplicate, and broken files, below ``root``."""
    (root / "sub").mkdir(parents=True)
    _photo(catalog, 3).save(root / "plain.jpg", "JPEG", quality=88)
    shutil.copy(root / "plain.jpg", root / "sub" / "same-content.jpg")  # searched once, credited twice
    _photo(catalog, 450).convert("CMYK").save(root / "cmyk.jpg", "JPEG")
    gray16 = (np.asarray(_photo(catalog, 777).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(root / "sub" / "deep16.png")
    frames = [_photo(catalog, 1100), _photo(catalog, 5)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated: displays upright after a 90 degree turn
    _photo(catalog, 1400).rotate(-90, expand=True).save(root / "rotated.jpg", "JPEG", exif=exif)
    _photo(catalog, 1750).save(root / "商品 图片.jpg", "JPEG")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a picture\n", encoding="utf-8")
    good = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])


def test_every_spec_kind_and_odd_images(
    tmp_path: Path, sandbox: SandboxProcess, catalog: Any, image_server: str,
) -> None:
    photos = tmp_path / "photos"
    _write_mix(photos, catalog)
    other = tmp_path / "other"
    other.mkdir()
    _photo(catalog, 2050).save(other / "single.jpg", "JPEG")
    _photo(catalog, 2400).save(other / "globbed.png", "PNG")
    manifest_dir = tmp_path / "manifest"
    manifest_dir.mkdir()
    _photo(catalog, 1200).save(manifest_dir / "鞋.jpg", "JPEG")
    cdn_url = f"{sandbox.url}/img/{catalog.products[60].num_iid}.jpg"
    manifest = (
        "image,seed_id,cat\n"
        f"鞋.jpg,manifest-shoe,\n"
        f"{image_server}/shoe.jpg,uploaded-shoe,\n"
        f"{image_server}/missing.jpg,upload-404,\n"
        f"{cdn_url},cdn-direct,\n"
        f"{sandbox.url}/img/1.jpg,cdn-unknown,\n"
    )
    (manifest_dir / "seeds.csv").write_bytes(manifest.encode("gb18030"))  # as Excel on Chinese Windows saves it
    seeds = ",".join([
        str(photos), str(other / "single.jpg"), str(other / "*.png"), str(manifest_dir / "seeds.csv"),
        str(tmp_path / "gone.jpg"),
    ])
    sandbox.reset()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = crawl(tmp_path, seeds, *against(sandbox, "-s", 'IMAGESEARCH_CDN_HOSTS=["127.0.0.1"]', "-a", "pages=2"),
                   env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-3000:]
    # The downloaded images waited in a directory of the crawl's own, gone with it.
    assert list(scratch.iterdir()) == []
    rows = result.summaries
    statuses = {Path(str(row["source"])).name if "/" in str(row["source"]) else row["source"]: row["status"]
                for row in rows.values()}
    assert len(rows) == 18, statuses
    for name in ("empty.jpg", "text.jpg", "truncated.jpg"):
        assert result.status_of(name)["status"] == "rejected"
        assert result.status_of(name)["error_code"] == "unreadable_image"
    assert result.status_of("gone.jpg")["error_code"] == "file_not_found"
    # An image URL is downloaded by the crawl itself: one it cannot fetch is rejected, no call spent.
    assert rows["upload-404"]["status"] == "rejected" and rows["upload-404"]["error_code"] == "image_unreachable"
    assert "HTTP 404" in rows["upload-404"]["error_msg"]
    assert rows["cdn-unknown"]["status"] == "failed" and rows["cdn-unknown"]["error_code"] == "21"
    ok = {seed_id for seed_id, row in rows.items() if row["status"] == "ok"}
    assert len(ok) == 18 - 6
    hits_per_seed = Counter(hit["seed_id"] for hit in result.hits)
    for seed_id in ok:
        assert hits_per_seed[seed_id] >= 1 and hits_per_seed[seed_id] == rows[seed_id]["items_found"]
    # Identical content: one search, two seeds each with their own rows and matches.
    plain, twin = result.status_of("plain.jpg"), result.status_of("same-content.jpg")
    assert plain["sha256"] == twin["sha256"] and plain["seed_id"] != twin["seed_id"]
    assert sorted(h["num_iid"] for h in result.hits if h["seed_id"] == plain["seed_id"]) == sorted(
        h["num_iid"] for h in result.hits if h["seed_id"] == twin["seed_id"])
    # The image the search should find comes first for an unaltered photo.
    first = [h for h in result.hits if h["seed_id"] == plain["seed_id"] and h["position"] == 1]
    assert str(first[0]["num_iid"]) == str(catalog.products[3].num_iid)
    positions = sorted(h["position"] for h in result.hits if h["seed_id"] == plain["seed_id"])
    assert positions == list(range(1, len(positions) + 1))
    # Calls: exactly the pages the results require, once per distinct image (image URLs are downloaded
    # by the crawl and sent as Base64, like local photos: no upload call).
    searched: dict[str, int] = {}
    for row in rows.values():
        if row["status"] == "ok":
            searched[f"{row['sha256'] or row['source']}"] = expected_pages(row["total_results"], 2)
            assert row["pages_fetched"] == expected_pages(row["total_results"], 2)
    failed_searches = 1  # cdn-unknown: one search call, refused
    stats = sandbox.stats()
    assert stats["calls"]["by_method"] == {SEARCH: sum(searched.values()) + failed_searches}, result.stderr[-6000:]
    assert stats["calls"]["total"] == result.stat("imagesearch/calls") == sum(searched.values()) + failed_searches
    assert result.stat("imagesearch/seeds/ok") == len(ok)
    assert result.stat("imagesearch/seeds/rejected") == 5
    assert "image_data" not in result.stderr and "sign=" not in result.stderr


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
def test_sign_methods_in_another_time_zone(tmp_path: Path, catalog: Any, sign_method: str) -> None:
    _photo(catalog, 321).save(tmp_path / "p.jpg", "JPEG")
    with SandboxProcess("--app", "key9:sec9", "--page-size", str(PAGE_SIZE)) as sandbox:
        result = crawl(
            tmp_path, str(tmp_path / "p.jpg"),
            *against(sandbox, "-a", "pages=1"),
            env={"TZ": "America/New_York", "IMAGESEARCH_APP_KEY": "key9", "IMAGESEARCH_APP_SECRET": "sec9",
                 "IMAGESEARCH_SIGN_METHOD": sign_method},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (row,) = result.summaries.values()
        assert row["status"] == "ok" and row["items_found"] == PAGE_SIZE
        assert sandbox.stats()["calls"]["total"] == 1


@pytest.mark.parametrize("gateway", ["top", "onebound"])
def test_embedded_sandbox_is_the_default(tmp_path: Path, catalog: Any, gateway: str) -> None:
    _photo(catalog, 42).save(tmp_path / "p.jpg", "JPEG")
    result = crawl(tmp_path, str(tmp_path / "p.jpg"), "-s", 'IMAGESEARCH_SANDBOX_ARGS=["--page-size", "4"]',
                   "-a", "pages=2", "-s", f"IMAGESEARCH_GATEWAY={gateway}")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line and "embedded sandbox" in line]
    assert len(warnings) == 1 and "not Taobao" in warnings[0]
    (row,) = result.summaries.values()
    assert row["status"] == "ok" and row["pages_fetched"] == 2 and row["items_found"] == 8
    assert str(result.hits[0]["num_iid"]) == str(catalog.products[42].num_iid)
    assert result.stat("imagesearch/gateway") == gateway


def test_quota_ban_is_waited_out(tmp_path: Path, catalog: Any) -> None:
    for index in range(8):
        _photo(catalog, 100 + 37 * index).save(tmp_path / f"p{index}.jpg", "JPEG")
    with SandboxProcess("--app", "test:test:5/3", "--page-size", str(PAGE_SIZE)) as sandbox:
        result = crawl(tmp_path, f"{tmp_path}/*.jpg", *against(sandbox, "-a", "pages=1"))
        stats = sandbox.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["status"] for row in result.summaries.values()] == ["ok"] * 8
    assert stats["quota_refused"] >= 1 and result.stat("imagesearch/throttled") >= 1
    assert stats["calls"]["total"] == 8 + stats["quota_refused"]


def test_transient_faults_are_retried(tmp_path: Path, catalog: Any) -> None:
    for index in range(6):
        _photo(catalog, 200 + 53 * index).save(tmp_path / f"p{index}.jpg", "JPEG")
    faults = ("--fault-5xx", "0.15", "--fault-garbage", "0.1", "--fault-drop", "0.1", "--fault-remote", "0.15",
              "--fault-seed", "4")
    with SandboxProcess("--page-size", str(PAGE_SIZE), "--max-results", "10", *faults) as sandbox:
        result = crawl(tmp_path, str(tmp_path), *against(
            sandbox, "-a", "pages=2", "-s", "RETRY_TIMES=8", "-s", "IMAGESEARCH_RETRY_BACKOFF=0.05"))
        stats = sandbox.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["status"] for row in result.summaries.values()] == ["ok"] * 6
    assert all(row["pages_fetched"] == 2 for row in result.summaries.values())
    assert sum(stats["faults"].values()) >= 1 and result.stat("retry/count") >= 1


# -- exit codes, secrets, call counts ------------------------------------------------------------

WRONG_SECRET = "wr0ng-Secret-7f3a9c"


def _all_text_below(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


def test_wrong_secret_stops_at_once_with_one_line_and_exit_3(
    tmp_path: Path, sandbox: SandboxProcess, catalog: Any,
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(12):
        _photo(catalog, 10 + index).save(photos / f"p{index}.jpg", "JPEG")
    out = tmp_path / "datasets"
    sandbox.reset()
    result = crawl(
        tmp_path, str(photos), *against(sandbox, "-s", f"DATASET_DIR={out}", "-s", "LOG_LEVEL=DEBUG"),
        env={"IMAGESEARCH_APP_SECRET": WRONG_SECRET}, feed=False,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert result.seconds < 30
    errors = [line for line in result.stderr.splitlines() if " ERROR: " in line]
    assert len(errors) == 1 and "gateway refused the credentials (code 15 isv.invalid-signature" in errors[0]
    assert "IMAGESEARCH_APP_SECRET" in errors[0] and "Traceback" not in result.stderr
    assert result.stat("finish_reason") == "gateway_fatal"
    assert result.stat("imagesearch/calls") == 1  # the others waited for the first answer, which stopped them
    assert sandbox.stats()["calls"]["total"] == 1
    written = _all_text_below(out)
    for text in (result.stdout, result.stderr, written):
        assert WRONG_SECRET not in text
    assert "sign=" not in result.stderr and "image_data=" not in result.stderr


def test_one_folder_typed_relative_or_absolute_gives_the_same_seed_ids(
    tmp_path: Path, sandbox: SandboxProcess,
) -> None:
    """A daily job's per-seed history must not break because its cron line spells the path otherwise."""
    runs = []
    for name, spec in (("relative", "data/seeds"), ("absolute", str(REPO / "data" / "seeds"))):
        (tmp_path / name).mkdir()
        result = crawl(tmp_path / name, spec, *against(sandbox, "-a", "pages=1"))
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(result.summaries)
    assert len(runs[0]) == 8 and sorted(runs[0]) == sorted(runs[1])
    assert {row["sha256"] for row in runs[0].values()} == {row["sha256"] for row in runs[1].values()}


def test_a_killed_crawl_leaves_its_downloaded_images_only_inside_its_run(
    tmp_path: Path, sandbox: SandboxProcess, image_server: str,
) -> None:
    scratch, datasets, jobdir = tmp_path / "tmp", tmp_path / "datasets", tmp_path / "job"
    scratch.mkdir()
    seeds = f"{image_server}/shoe.jpg"
    options = ["-a", "pages=1", "-s", f"DATASET_DIR={datasets}", "-s", "DATASET_FORMATS=parquet",
               "-s", f"JOBDIR={jobdir}", "-s", "RETRY_TIMES=0"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}, "TMPDIR": str(scratch)}
    with SandboxProcess("--page-size", str(PAGE_SIZE), "--fault-slow", "1", "--slow-seconds", "60") as slow:
        command = [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}",
                   "-s", f"IMAGESEARCH_ENDPOINT={slow.endpoint}", *options]
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            # The image is downloaded and kept; its search call hangs at the slow sandbox.
            while not list(datasets.glob("_staging/*/scratch/*/*")) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert list(datasets.glob("_staging/*/scratch/*/*")), "the downloaded image never reached the run"
            process.kill()
        finally:
            process.kill()
            process.wait()
    assert list(scratch.iterdir()) == []  # nothing in the system's temporary directory
    result = crawl(tmp_path, seeds, *against(sandbox, *options), env={"TMPDIR": str(scratch)}, feed=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_dataset(datasets)["seeds"]["status"].tolist() == ["ok"]
    assert list(scratch.iterdir()) == []
    assert not (datasets / "_staging").exists() or not list((datasets / "_staging").iterdir())


def test_fatal_rows_account_for_every_seed(tmp_path: Path, catalog: Any, image_server: str) -> None:
    for index in range(3):
        _photo(catalog, 30 + index).save(tmp_path / f"p{index}.jpg", "JPEG")
    seeds = f"{tmp_path}/p0.jpg,{image_server}/shoe.jpg,{tmp_path}/p1.jpg,{tmp_path}/p2.jpg"
    with SandboxProcess("--deny", "test:taobao.image.search", "--page-size", str(PAGE_SIZE)) as sandbox:
        result = crawl(tmp_path, seeds, *against(sandbox, "-a", "pages=1", "-s", "CONCURRENT_REQUESTS=1"))
    assert result.returncode == 3, result.stderr[-3000:]
    assert "lacks permission" in result.stderr
    rows = result.summaries
    assert len(rows) == 4
    assert {row["status"] for row in rows.values()} == {"failed"}
    assert {row["error_code"] for row in rows.values()} == {"11"}


@pytest.mark.parametrize(
    "seeds, options, message",
    [
        ("", (), "no seeds given"),
        ("{tmp}/nothing-here.jpg", (), "nothing to search"),
        ("{tmp}/*.webp", (), "matches no file"),
        ("{tmp}/p.jpg", ("-a", "pages=abc"), "pages='abc' is not a positive whole number"),
        ("{tmp}/p.jpg", ("-s", "IMAGESEARCH_SIGN_METHOD=sha1"), "IMAGESEARCH_SIGN_METHOD='sha1'"),
        ("{tmp}/bad.csv", (), "has no 'image' column"),
        ("{tmp}/p.jpg", ("-s", "IMAGESEARCH_ERROR_ACTIONS={\"15\": \"ignore\"}"), "use one of"),
        ("{tmp}/p.jpg", ("-a", "cat=shoes"), "is not a category id"),
    ],
)
def test_unusable_input_fails_fast_with_one_line(
    tmp_path: Path, sandbox: SandboxProcess, catalog: Any, seeds: str, options: tuple[str, ...], message: str
) -> None:
    _photo(catalog, 7).save(tmp_path / "p.jpg", "JPEG")
    (tmp_path / "bad.csv").write_text("path\np.jpg\n", encoding="utf-8")
    sandbox.reset()
    result = crawl(tmp_path, seeds.format(tmp=tmp_path), *against(sandbox, *options))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert (
        len(lines) == 1 and lines[0].startswith("scrapy crawl imagesearch: error: ") and message in lines[0]
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.stats()["calls"]["total"] == 0


def test_unwritable_dataset_dir_fails_fast(tmp_path: Path, catalog: Any) -> None:
    _photo(catalog, 7).save(tmp_path / "p.jpg", "JPEG")
    (tmp_path / "a-file").write_text("x")
    result = crawl(tmp_path, str(tmp_path / "p.jpg"), "-s", f"DATASET_DIR={tmp_path}/a-file/datasets", feed=False)
    assert result.returncode == 2
    assert "scrapy crawl imagesearch: error: DATASET_DIR=" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("pages", [1, 3])
def test_calls_equal_the_pages_required(
    tmp_path: Path, sandbox: SandboxProcess, catalog: Any, image_server: str, pages: int
) -> None:
    for index in range(3):
        _photo(catalog, 1500 + 11 * index).save(tmp_path / f"p{index}.jpg", "JPEG")
    shutil.copy(tmp_path / "p0.jpg", tmp_path / "p0-again.jpg")
    seeds = f"{tmp_path},{image_server}/shoe.jpg"
    sandbox.reset()
    result = crawl(
        tmp_path, seeds, *against(sandbox, "-a", f"pages={pages}", "-a", f"cat={catalog.products[1500].cat}")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(result.summaries.values())
    assert len(rows) == 5 and all(row["status"] == "ok" for row in rows)
    distinct = {row["sha256"] or row["source"]: row for row in rows}
    assert len(distinct) == 4
    required = sum(expected_pages(row["total_results"], pages) for row in distinct.values())
    assert all(row["pages_fetched"] == expected_pages(row["total_results"], pages) for row in rows)
    stats = sandbox.stats()["calls"]
    assert stats["by_method"] == {SEARCH: required}  # the image URL too is sent as Base64: no upload call
    assert stats["total"] == result.stat("imagesearch/calls") == required
    assert all(hit["cat"] == str(catalog.products[1500].cat) for hit in result.hits)


# -- the stopping rule and argument checks, without a crawl --------------------------------------

@pytest.mark.parametrize(
    "page, items_on_page, page_size, total, max_pages, more",
    [
        (1, 5, 5, 12, 5, True),    # full page, 5 < 12
        (2, 5, 5, 12, 5, True),    # 10 < 12
        (3, 2, 5, 12, 5, False),   # short last page
        (2, 5, 5, 10, 5, False),   # 10 == total
        (1, 5, 5, 200, 1, False),  # pages=1
        (1, 3, 5, 200, 5, False),  # a short page ends it whatever total_results says
        (1, 0, 20, 0, 5, False),   # nothing found
    ],
)
def test_more_pages_rule(page: int, items_on_page: int, page_size: int, total: int, max_pages: int, more: bool) -> None:
    from spiders.imagesearch import SearchJob

    spider = _paging_spider(max_pages)
    job = SearchJob("j", None, page_size=page_size, total_results=total)
    assert spider._has_more_pages(job, page, items_on_page) is more


@pytest.mark.parametrize(
    "page, items_on_page, page_count, max_pages, more",
    [
        (1, 20, 3, 5, True),
        (2, 7, 3, 5, True),    # a short page in the middle: the page count says there is more
        (3, 20, 3, 5, False),  # the last page
        (2, 20, 9, 2, False),  # pages=2
        (1, 0, 9, 5, False),   # an empty page ends it
    ],
)
def test_a_gateways_page_count_rules_the_paging(page: int, items_on_page: int, page_count: int, max_pages: int,
                                                more: bool) -> None:
    from spiders.imagesearch import SearchJob

    spider = _paging_spider(max_pages)
    job = SearchJob("j", None, page_size=20, total_results=None, page_count=page_count)
    assert spider._has_more_pages(job, page, items_on_page) is more


def _paging_spider(max_pages: int, gateway: str = "top") -> Any:
    """A spider with only what the paging rule reads: its pages and its gateway."""
    from pipeline.gateways.aliyun.gateway import AliyunGateway
    from pipeline.gateways.top.gateway import TopGateway
    from pipeline.pacing.apps import Credentials
    from spiders.imagesearch import ImageSearchSpider

    spider = ImageSearchSpider(seeds="x")
    spider.max_pages = max_pages
    spider.gateway = (AliyunGateway if gateway == "aliyun" else TopGateway)(Credentials("k", "s"))
    return spider


@pytest.mark.parametrize(
    "page, items_on_page, max_pages, more",
    [
        (1, 20, 5, True),     # no total: a full page asks for the next
        (2, 19, 5, False),    # a short page is the last
        (3, 20, 3, False),    # pages=3
        (25, 20, 30, False),  # Start 480 is the last window of 20 that starts by 499
        (24, 20, 30, True),
    ],
)
def test_without_a_total_the_pages_go_on_while_full_up_to_the_gateways_last(
    page: int, items_on_page: int, max_pages: int, more: bool,
) -> None:
    from spiders.imagesearch import SearchJob

    spider = _paging_spider(max_pages, "aliyun")
    job = SearchJob("j", None, page_size=20, total_results=None)
    assert spider._has_more_pages(job, page, items_on_page) is more


@pytest.mark.parametrize("value", ["abc", "0", "-2", "", None, "1.5"])
def test_positive_int_refuses(value: Any) -> None:
    from pipeline.configuration import whole_number
    from pipeline.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="pages="):
        whole_number("pages", value)


def test_a_gateway_that_uploads_local_images_needs_no_spider_change(
    tmp_path: Path, sandbox: SandboxProcess, catalog: Any,
) -> None:
    for index in range(3):
        _photo(catalog, 60 + index).save(tmp_path / f"p{index}.jpg", "JPEG")
    sandbox.reset()
    result = crawl(
        tmp_path, f"{tmp_path}/p0.jpg,{tmp_path}/p1.jpg,{tmp_path}/p2.jpg",
        *against(sandbox, "-a", "pages=1", "-s", "IMAGESEARCH_GATEWAY=uploading_gateway.UploadingTopGateway"),
        env={"PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["status"] for row in result.summaries.values()] == ["ok"] * 3
    calls = sandbox.stats()["calls"]["by_method"]
    assert calls == {"taobao.upload.img": 3, "taobao.image.search": 3}, calls
