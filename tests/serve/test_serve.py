"""``scrapy serve`` against a standalone sandbox, over real HTTP on loopback: the API a phone app or web page calls."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import load_dataset, run_crawl, write_seed_photos
from PIL import Image
from serving import ServeProcess

from sandbox.testing import SandboxProcess

LISTING = ["title", "pic_url", "detail_url", "seller_nick", "is_tmall", "price_min", "price_max", "price_raw",
           "sales", "sales_kind", "sales_raw"]
SECRET = "s3cr3t-serve-Secret-9f2"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_seed_photos(tmp_path_factory.mktemp("photos"), 24, size=160)


@pytest.fixture(scope="module")
def sandbox() -> Any:
    # 27 results: page 2 holds 7 of them, and their positions run on from page 1's 20 (21-27), as the crawl's.
    with SandboxProcess("--max-results", "27") as running:
        yield running


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-cache")


@pytest.fixture(scope="module")
def service(sandbox: SandboxProcess, cache_dir: Path) -> Any:
    with ServeProcess(sandbox.endpoint, "-s", "IMAGESEARCH_QUOTA=", "-s", "IMAGESEARCH_SERVE_MAX_UPLOAD_BYTES=2000000",
                      cache_dir=cache_dir) as running:
        yield running
    assert "Traceback" not in running.text(), running.text()[-4000:]


def stored_pages(path: Path) -> int:
    """Pages in the service's SQLite cache file, read as another process would (0 before it exists)."""
    if not path.exists():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM answers").fetchone()[0])


def calls(sandbox: SandboxProcess) -> int:
    return int(sandbox.stats()["calls"]["total"])


def test_a_photo_gives_the_products_the_crawl_gives_and_again_costs_no_call(
    service: ServeProcess, sandbox: SandboxProcess, photos: list[Path], tmp_path: Path,
) -> None:
    photo = photos[0]
    crawl = run_crawl(str(photo), "-a", "pages=2", "-s", "IMAGESEARCH_QUOTA=", "-s", "DATASET_FORMATS=parquet",
                      dataset_dir=tmp_path / "datasets", endpoint=sandbox.endpoint)
    assert crawl.returncode == 0, crawl.tail()
    products = load_dataset(tmp_path / "datasets")["products"].set_index("num_iid").sort_index()

    before = calls(sandbox)
    status, _, result = service.post_photo(photo.read_bytes(), pages="2")
    assert status == 200, result
    assert result["calls"] == 2 == calls(sandbox) - before == result["pages_fetched"]
    assert result["sha256"] == load_dataset(tmp_path / "datasets")["seeds"]["sha256"].iloc[0]
    served = pd.DataFrame(result["matches"]).set_index("num_iid").sort_index()
    assert list(served.index) == list(products.index) and served.index.is_unique
    for column in LISTING:
        expected = [None if pd.isna(v) else (float(v) if column.startswith("price_m") else v)
                    for v in products[column]]
        got = [None if v is None or (isinstance(v, float) and pd.isna(v)) else v for v in served[column]]
        assert got == expected, column
    # Positions are the matches table's: 1..n over both pages, the best one kept per product.
    matches = load_dataset(tmp_path / "datasets")["matches"].groupby("num_iid")["position"].min().sort_index()
    assert list(served["position"]) == list(matches)
    assert sorted(served["position"]) == list(range(1, len(served) + 1)) and len(served) == 27

    # The same photo again: answered from the cache, no call reaches the gateway.
    before = calls(sandbox)
    status, _, again = service.post_photo(photo.read_bytes(), pages="2")
    assert status == 200 and again["calls"] == 0 and again["pages_cached"] == 2, again
    assert calls(sandbox) == before
    assert again["matches"] == result["matches"]
    # As JSON with Base64 (a data: URL, as a browser gives it): the same picture, still no call.
    encoded = "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()
    status, _, raw = service.post_json({"image_base64": encoded, "pages": 2})
    assert status == 200 and json.loads(raw)["calls"] == 0 and calls(sandbox) == before


def test_an_image_url_is_downloaded_and_searched(service: ServeProcess, sandbox: SandboxProcess) -> None:
    status, _, first = service.post_photo(write_png(200, 200))
    assert status == 200
    url = first["matches"][0]["pic_url"]  # a picture the sandbox serves: not on the platform's CDN
    status, _, raw = service.post_json({"url": url})
    result = json.loads(raw)
    assert status == 200 and result["calls"] == 1, result
    assert result["matches"][0]["pic_url"] == url  # its own listing first


def write_png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "white" if mode != "1" else 1).save(out, "PNG")
    return out.getvalue()


def gradient_png(width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` that compresses to a few hundred KB whatever its size."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(out, "PNG")
    return out.getvalue()


def test_each_bad_input_gets_its_4xx_as_one_line_of_json(service: ServeProcess, sandbox: SandboxProcess) -> None:
    before = calls(sandbox)
    cases: list[tuple[int, str, tuple[int, dict[str, str], bytes]]] = []

    def multipart(data: bytes, **fields: str) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = service.post_photo(data, **fields)
        return status, headers, json.dumps(body).encode()

    cases.append((422, "unreadable_image", multipart(b"these are my notes, not a photo\n")))
    cases.append((413, "image_too_large_bytes", multipart(b"\xff" * 3_000_000)))
    cases.append((413, "image_too_large", multipart(write_png(20_000, 20_000, "1"))))  # a bomb: 400 Mpx
    cases.append((400, "bad_cat", multipart(write_png(200, 200), cat="shoes")))
    cases.append((400, "bad_pages", multipart(write_png(200, 200), pages="99")))
    cases.append((400, "bad_json", service.request("POST", "/search", b"{not json", "application/json")))
    cases.append((400, "no_image", service.post_json({"cat": "123"})))
    cases.append((400, "bad_base64", service.post_json({"image_base64": "%%%"})))
    cases.append((400, "bad_json", service.request("POST", "/search", b"[" * 100_000, "application/json")))
    cases.append((400, "bad_url", service.post_json({"url": "file:///etc/passwd"})))
    # Not fetched for a caller: this machine's other services, a private network, a cloud's metadata.
    cases.append((400, "url_not_allowed", service.post_json({"url": "http://127.0.0.1:6800/listjobs.json"})))
    cases.append((400, "url_not_allowed", service.post_json({"url": "http://10.1.2.3/photo.jpg"})))
    cases.append((400, "url_not_allowed", service.post_json({"url": "http://169.254.169.254/latest/meta-data/"})))
    cases.append((400, "url_not_allowed", service.post_json({"url": "http://[::1]:22/x.jpg"})))
    cases.append((400, "url_not_allowed", service.post_json({"url": "http://localhost:6379/x.jpg"})))  # resolved
    cases.append((400, "bad_request", service.post_json({"photo": "x"})))
    cases.append((415, "unsupported_media_type", service.request("POST", "/search", b"x", "text/plain")))
    cases.append((400, "bad_multipart", service.request("POST", "/search", b"x", "multipart/form-data")))
    cases.append((400, "bad_multipart", service.request("POST", "/search", b"--b\r\nno headers, no end",
                                                        "multipart/form-data; boundary=b")))
    cases.append((400, "no_image", service.request("POST", "/search", b"--b\r\nContent-Disposition: form-data; "
                                                   b'name="cat"\r\n\r\n123\r\n--b--\r\n',
                                                   "multipart/form-data; boundary=b")))
    cases.append((405, "method_not_allowed", service.request("GET", "/search")))
    cases.append((404, "not_found", service.request("GET", "/nothing/here")))
    for status, code, (got, headers, body) in cases:
        assert got == status, (code, got, body)
        assert headers["Content-Type"].startswith("application/json")
        error = json.loads(body)
        assert error["error"] == code and error["message"] and "\n" not in error["message"], error
    assert calls(sandbox) == before  # none of them spent a call
    assert "Traceback" not in service.text()


def test_health_and_metrics_say_calls_cache_and_quota(service: ServeProcess) -> None:
    photo = write_png(210, 190)
    for _ in range(2):  # a call, then a cache hit: the counts below hold whichever tests ran before
        assert service.post_photo(photo)[0] == 200
    status, _, raw = service.request("GET", "/healthz")
    health = json.loads(raw)
    assert status == 200 and health["status"] == "ok" and health["gateway"] == "top", health
    assert health["quota"] is None  # IMAGESEARCH_QUOTA= : unpaced
    status, headers, raw = service.request("GET", "/metrics")
    text = raw.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if not line.startswith("#")}
    assert values["imagesearch_gateway_calls_total"] == health["calls"] > 0
    assert values["imagesearch_serve_cache_hits_total"] == health["cache"]["hits"] > 0
    assert values['imagesearch_serve_searches_total{status="200"}'] >= 1
    assert values["imagesearch_serve_up"] == 1
    assert values["imagesearch_serve_searches_in_progress"] == health["searches_in_progress"] == 0
    assert values["imagesearch_serve_photos_decoded_total"] >= 2
    assert values["imagesearch_serve_decode_seconds_total"] > 0


def test_a_large_photo_being_decoded_never_stalls_the_other_callers(service: ServeProcess) -> None:
    # 36 Mpx: its decode takes a while. Searched once, it is in the cache: the second search of it is a
    # decode and nothing else (no call), so only while the decode runs is that search in progress.
    large = gradient_png(6000, 6000)
    assert service.post_photo(large)[0] == 200
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(service.post_photo, large)
        seen: list[int] = []
        while not pending.done():
            health = json.loads(service.request("GET", "/healthz")[2])
            if not pending.done():  # answered while the large search was still pending
                seen.append(health["searches_in_progress"])
        status, _, result = pending.result()
    assert status == 200 and result["calls"] == 0 and result["pages_cached"] == 1, result
    # The service answered other callers while that photo was being decoded (in a thread): with the
    # decode on the reactor thread, no request is answered until it is done, and by then it is over.
    assert 1 in seen, seen


def test_an_answered_page_is_in_the_cache_file_and_survives_a_kill(sandbox: SandboxProcess, photos: list[Path],
                                                                   tmp_path: Path) -> None:
    # A page is stored just after its answer is sent, not when the service stops: a service killed with
    # SIGKILL (no shutdown) has kept it, and the next one answers from it.
    photo = photos[5].read_bytes()
    with ServeProcess(sandbox.endpoint, "-s", "IMAGESEARCH_QUOTA=", cache_dir=tmp_path) as first:
        status, _, result = first.post_photo(photo)
        assert status == 200 and result["calls"] == 1
        deadline = time.monotonic() + 30
        while stored_pages(tmp_path / "answers.sqlite3") < 1:
            assert time.monotonic() < deadline, "the answered page never reached the cache file"
            time.sleep(0.05)
        assert first.process is not None
        first.process.kill()
        first.process.wait()
    before = calls(sandbox)
    with ServeProcess(sandbox.endpoint, "-s", "IMAGESEARCH_QUOTA=", cache_dir=tmp_path) as second:
        status, _, again = second.post_photo(photo)
    assert status == 200 and again["calls"] == 0 and calls(sandbox) == before
    assert again["matches"] == result["matches"]


def test_twenty_callers_under_a_small_quota_get_200_or_429_and_the_gateway_no_quota_error(
    photos: list[Path], tmp_path: Path,
) -> None:
    with SandboxProcess("--app", "test:test:4/30") as small, ServeProcess(
        small.endpoint, "-s", "IMAGESEARCH_QUOTA=4/30", "-s", "IMAGESEARCH_QUOTA_MARGIN=0.5",
        "-s", "IMAGESEARCH_SERVE_MAX_WAIT=3", cache_dir=tmp_path,
    ) as service:
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda photo: service.post_photo(photo.read_bytes()), photos[:20]))
        stats = small.stats()
        log = service.text()
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 4 and 429 in statuses, statuses
    for status, headers, body in answers:
        if status == 429:
            assert int(headers["Retry-After"]) >= 1 and body["error"] == "quota_wait", (headers, body)
        else:
            assert body["calls"] == 1 and body["matches"], body
    assert stats["quota_refused"] == 0, stats
    assert stats["calls"]["total"] == statuses.count(200)
    assert "Traceback" not in log


def test_a_wrong_secret_is_a_502_with_the_gateways_code_and_never_the_secret(
    sandbox: SandboxProcess, photos: list[Path], tmp_path: Path,
) -> None:
    with ServeProcess(sandbox.endpoint, "-s", "IMAGESEARCH_QUOTA=", "-s", "LOG_LEVEL=DEBUG", cache_dir=tmp_path,
                      env={"IMAGESEARCH_APP_SECRET": SECRET}) as service:
        status, _, first = service.post_photo(photos[7].read_bytes())
        status_after, _, after = service.post_photo(photos[8].read_bytes())
        _, _, health = service.request("GET", "/healthz")
        log = service.text()
    assert status == 502 and first["error"] == "15", first  # TOP: isv.invalid-signature
    assert status_after == 503 and after["error"] == "15", after  # no more calls on a wrong secret
    assert json.loads(health)["status"] == "stopped"
    for text in (json.dumps(first), json.dumps(after), health.decode(), log):
        assert SECRET not in text
    assert "Traceback" not in log


def test_a_spent_daily_quota_is_503_with_retry_after_and_the_cache_still_answers(
    photos: list[Path], tmp_path: Path,
) -> None:
    with SandboxProcess("--app", "test:test:1000/3600:1") as daily, ServeProcess(
        daily.endpoint, "-s", "IMAGESEARCH_QUOTA=", cache_dir=tmp_path,
    ) as service:
        status, _, first = service.post_photo(photos[10].read_bytes())
        assert status == 200 and first["calls"] == 1, first
        status, headers, spent = service.post_photo(photos[11].read_bytes())
        assert status == 503 and spent["error"] == "quota_spent", spent
        assert int(headers["Retry-After"]) >= 1
        status, _, again = service.post_photo(photos[10].read_bytes())  # from the cache: still served
        assert status == 200 and again["calls"] == 0
        _, _, health = service.request("GET", "/healthz")
        assert json.loads(health)["status"] == "quota_spent"
        # Calls stop at the first refusal: the second photo's call was the only one refused.
        status, _, later = service.post_photo(photos[12].read_bytes())
        assert status == 503 and later["error"] == "quota_spent"
        stats = daily.stats()
        log = service.text()
    assert stats["calls"]["total"] <= 2, stats
    assert "Traceback" not in log
