"""A gateway that never answers: the crawl says so in one line, exits 7, keeps JOBDIR and commits nothing.

A scheduler must tell "the gateway never answered once" from success: a wrong endpoint, a dead
network or a server that is not the gateway would otherwise mark every seed failed and exit 0.
The real ``scrapy crawl imagesearch`` runs against a port nobody listens on, a host that does not
resolve, a wrong path on the sandbox, a web server that answers HTML, and a sandbox that answers only 5xx.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from datasets import CrawlRun, free_port, load_dataset, run_crawl, write_seed_photos

from sandbox.testing import SandboxProcess

EXIT_GATEWAY_UNREACHABLE = 7
FAST = ("-s", "IMAGESEARCH_QUOTA=", "-s", "IMAGESEARCH_RETRY_BACKOFF=0.05", "-s", "DATASET_FORMATS=parquet")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    write_seed_photos(tmp_path / "photos", 4)
    return tmp_path / "photos"


def _assert_unreachable(result: CrawlRun, tmp_path: Path, jobdir: Path) -> None:
    assert result.returncode == EXIT_GATEWAY_UNREACHABLE, result.tail()
    assert "Traceback" not in result.stderr, result.tail()
    said = [line for line in result.stderr.splitlines() if "never answered" in line]
    assert said, result.tail()
    assert "check IMAGESEARCH_ENDPOINT" in said[-1]
    assert jobdir.is_dir() and any(jobdir.iterdir()), "JOBDIR must be kept for the resume"
    datasets = tmp_path / "datasets"
    assert not (datasets / "_manifests").exists() or not any((datasets / "_manifests").iterdir()), result.tail()
    assert not list(datasets.glob("products/**/*.parquet")) and not list(datasets.glob("seeds/**/*.parquet"))


def test_nobody_listening_exits_7_and_the_same_command_finishes_once_the_gateway_is_up(
    tmp_path: Path, photos: Path
) -> None:
    port = free_port()
    jobdir = tmp_path / "job"
    options = (*FAST, "-s", f"JOBDIR={jobdir}")
    endpoint = f"http://127.0.0.1:{port}/router/rest"
    refused = run_crawl(str(photos), *options, dataset_dir=tmp_path / "datasets", endpoint=endpoint)
    _assert_unreachable(refused, tmp_path, jobdir)
    assert "Connection was refused" in refused.stderr
    assert refused.seconds < 60, refused.tail()  # seconds, not RETRY_TIMES x backoff minutes

    with SandboxProcess("--port", str(port)) as sandbox:
        again = run_crawl(str(photos), *options, dataset_dir=tmp_path / "datasets", endpoint=endpoint)
        calls = sandbox.stats()["calls"]["total"]
    assert again.returncode == 0, again.tail()
    seeds = load_dataset(tmp_path / "datasets")["seeds"]
    assert len(seeds) == 4 and seeds["status"].eq("ok").all(), seeds.to_string()
    assert calls == again.stats["imagesearch/calls"]


def test_a_host_that_does_not_resolve_exits_7(tmp_path: Path, photos: Path) -> None:
    jobdir = tmp_path / "job"
    endpoint = "http://gateway.invalid/router/rest"  # .invalid never resolves (RFC 2606)
    result = run_crawl(str(photos), *FAST, "-s", f"JOBDIR={jobdir}", dataset_dir=tmp_path / "datasets",
                       endpoint=endpoint)
    _assert_unreachable(result, tmp_path, jobdir)
    assert "DNS lookup failed" in result.stderr, result.tail()


def test_a_wrong_path_on_the_server_exits_7(tmp_path: Path, photos: Path, sandbox: SandboxProcess) -> None:
    jobdir = tmp_path / "job"
    wrong = sandbox.endpoint.rsplit("/", 2)[0] + "/api/rest"  # 404 at the endpoint
    result = run_crawl(str(photos), *FAST, "-s", f"JOBDIR={jobdir}", dataset_dir=tmp_path / "datasets", endpoint=wrong)
    _assert_unreachable(result, tmp_path, jobdir)
    assert "HTTP 404" in result.stderr


class _WebPage(BaseHTTPRequestHandler):
    """A web server that is not the gateway: every path answers 200 with an HTML page."""

    def _page(self) -> None:
        body = b"<!doctype html><html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/router/rest"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_the_gateway_exits_7(tmp_path: Path, photos: Path, web_page: str) -> None:
    jobdir = tmp_path / "job"
    result = run_crawl(str(photos), *FAST, "-s", f"JOBDIR={jobdir}", dataset_dir=tmp_path / "datasets",
                       endpoint=web_page)
    _assert_unreachable(result, tmp_path, jobdir)
    assert "not the top gateway's" in result.stderr


def test_a_gateway_answering_only_5xx_exits_7_after_the_first_calls_retries(tmp_path: Path, photos: Path) -> None:
    jobdir = tmp_path / "job"
    with SandboxProcess("--fault-5xx", "1.0") as sandbox:
        result = run_crawl(str(photos), *FAST, "-s", f"JOBDIR={jobdir}", dataset_dir=tmp_path / "datasets",
                           endpoint=sandbox.endpoint)
        calls = sandbox.stats()["calls"]["total"]
    _assert_unreachable(result, tmp_path, jobdir)
    assert calls == 1 + 2  # the first call and its IMAGESEARCH_PROBE_RETRY_TIMES; the others never left
