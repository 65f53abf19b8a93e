"""Checks and alerts as a scheduled refresh meets them: real crawls against the sandbox, posting to a local
webhook receiver. A healthy run posts one "finished" and fails no check; a gateway whose prices stop parsing
fails the coverage check, alerts naming it and exits 8; a webhook that is down changes nothing; no webhook
secret reaches the logs, the stats, the manifest or the report."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pytest
from datasets import free_port, run_crawl

from pipeline.alerts import dingtalk_sign
from sandbox.catalog import ITEM_FIELDS, builtin_catalog
from sandbox.testing import SandboxProcess

TOKEN, SIGNING = "dtTOKEN5f3e9a", "SECb81c4d7e2a90"


class Receiver:
    """A webhook on 127.0.0.1: records each POST (path with query, JSON body) and answers as DingTalk does."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, json.loads(body)))
                answer = b'{"errcode": 0, "errmsg": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def dingtalk(self) -> str:
        return (f"dingtalk+http://127.0.0.1:{self.server.server_address[1]}/robot/send?access_token={TOKEN}"
                f"&secret={SIGNING}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.server.shutdown()


def _secret_free(run: Any, root: Path) -> None:
    """No webhook secret in the crawl's output, its manifest (stats included) or its report."""
    texts = [run.stdout, run.stderr, *(p.read_text(encoding="utf-8") for p in root.glob("_manifests/*.json")),
             *(p.read_text(encoding="utf-8") for p in root.glob("_reports/*.html"))]
    for text in texts:
        assert TOKEN not in text and SIGNING not in text


def test_a_healthy_run_posts_one_finished_message_and_fails_no_check(
    sandbox: SandboxProcess, receiver: Receiver, tmp_path: Path,
) -> None:
    before = int(time.time() * 1000)
    run = run_crawl("data/seeds", "-a", "pages=1", "-s", "IMAGESEARCH_QUOTA=", "-s", "LOG_LEVEL=DEBUG",
                    dataset_dir=tmp_path, endpoint=sandbox.endpoint, env={"IMAGESEARCH_ALERT_URLS": receiver.dingtalk},
                    pictures=True)
    assert run.returncode == 0, run.tail()
    assert len(receiver.posts) == 1
    path, body = receiver.posts[0]
    query = parse_qs(urlsplit(path).query)
    # DingTalk's signed URL: the access token, the timestamp and its signature; the secret itself never sent.
    assert query["access_token"] == [TOKEN] and "secret" not in query
    stamp = int(query["timestamp"][0])
    assert before <= stamp <= int(time.time() * 1000)
    assert query["sign"] == [unquote(dingtalk_sign(stamp, SIGNING))]
    assert body["msgtype"] == "markdown" and "finished" in body["markdown"]["title"]
    manifest = run.manifest()
    assert manifest["run_id"] in body["markdown"]["text"] and "8" in body["markdown"]["text"]
    assert manifest["checks"] and all(check["passed"] for check in manifest["checks"])
    runs = pd.read_parquet(tmp_path / "parquet" / "runs")
    assert runs["checks_failed"].tolist() == [0] and runs["failed_checks"].isna().all()
    assert "Checks: all" in next(tmp_path.glob("_reports/*.html")).read_text(encoding="utf-8")
    _secret_free(run, tmp_path)


@pytest.fixture(scope="module")
def garbled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A catalogue whose prices mostly do not parse ("电议", "see shop"), and seed photos of its products."""
    root = tmp_path_factory.mktemp("garbled")
    (root / "images").mkdir()
    (root / "seeds").mkdir()
    lines = []
    for k, product in enumerate(builtin_catalog().products[:300:15]):
        name = f"images/{product.num_iid}.jpg"
        product.image().save(root / name, "JPEG", quality=85)
        record = {field: product.fields[field] for field in ITEM_FIELDS if field != "pic_url"}
        record.update(cat=product.cat, image=name, price="电议" if k % 5 else "39.90")
        lines.append(json.dumps(record, ensure_ascii=False))
        if k < 4:
            product.image().save(root / "seeds" / f"photo{k}.jpg", "JPEG", quality=80)
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "catalog.jsonl", root / "seeds"


def test_prices_that_stop_parsing_fail_the_coverage_check_alert_and_exit_8(
    make_sandbox: Any, receiver: Receiver, garbled: tuple[Path, Path], tmp_path: Path,
) -> None:
    catalog, seeds = garbled
    sandbox = make_sandbox("--catalog", str(catalog))
    run = run_crawl(str(seeds), "-a", "pages=1", "-s", "IMAGESEARCH_QUOTA=", dataset_dir=tmp_path,
                    endpoint=sandbox.endpoint, env={"IMAGESEARCH_ALERT_URLS": receiver.dingtalk})
    assert run.returncode == 8, run.tail()
    assert "data-quality check set to fail the run failed" in run.stderr
    assert "Check failed: coverage_price" in run.stderr and "Traceback" not in run.stderr
    manifest = run.manifest()
    assert manifest["complete"] is True  # committed, and marked
    failed = {check["name"]: check for check in manifest["checks"] if not check["passed"]}
    assert "coverage_price" in failed and failed["coverage_price"]["figure"] < 0.8
    runs = pd.read_parquet(tmp_path / "parquet" / "runs")
    assert runs["checks_failed"].iloc[0] == len(failed) and "coverage_price" in runs["failed_checks"].iloc[0]
    assert len(receiver.posts) == 1
    text = receiver.posts[0][1]["markdown"]["title"] + receiver.posts[0][1]["markdown"]["text"]
    assert "checks_failed" in text and "coverage_price" in text
    report = next(tmp_path.glob("_reports/*.html")).read_text(encoding="utf-8")
    assert "Checks: " in report and 'class="check-fail"><td>coverage_price' in report
    _secret_free(run, tmp_path)


def test_a_check_set_to_warn_warns_and_exits_0(
    make_sandbox: Any, garbled: tuple[Path, Path], tmp_path: Path,
) -> None:
    catalog, seeds = garbled
    sandbox = make_sandbox("--catalog", str(catalog))
    run = run_crawl(str(seeds), "-a", "pages=1", "-s", "IMAGESEARCH_QUOTA=", "-s",
                    'IMAGESEARCH_CHECKS={"coverage_price": {"on_fail": "warn"}}', dataset_dir=tmp_path,
                    endpoint=sandbox.endpoint)
    assert run.returncode == 0, run.tail()
    assert "WARNING: Check failed: coverage_price" in run.stderr


def test_an_unreachable_webhook_leaves_the_run_committed_and_exit_0(sandbox: SandboxProcess, tmp_path: Path) -> None:
    down = f"https://127.0.0.1:{free_port()}/services/T000/B000/{TOKEN}"
    run = run_crawl("data/seeds", "-a", "pages=1", "-s", "IMAGESEARCH_QUOTA=", "-s", "IMAGESEARCH_ALERT_DEADLINE=3",
                    dataset_dir=tmp_path, endpoint=sandbox.endpoint, env={"IMAGESEARCH_ALERT_URLS": down})
    assert run.returncode == 0, run.tail()
    assert run.manifest()["complete"] is True
    said = [line for line in run.stderr.splitlines() if "Alert to" in line]
    assert len(said) == 1 and "127.0.0.1" in said[0] and "failed" in said[0], run.tail()
    _secret_free(run, tmp_path)


def test_a_bad_webhook_or_check_setting_is_one_line_and_no_call(sandbox: SandboxProcess, tmp_path: Path) -> None:
    for option, says in [("IMAGESEARCH_ALERT_URLS=ftp://hooks.example.com/x", "not an http(s) URL"),
                         ("IMAGESEARCH_ALERT_ON=finished,exploded", "'exploded' is not one of"),
                         ('IMAGESEARCH_CHECKS={"coverage": {"threshold": 1}}', "no check 'coverage'")]:
        sandbox.reset()
        run = run_crawl("data/seeds", "-s", option, dataset_dir=tmp_path, endpoint=sandbox.endpoint)
        assert run.returncode == 2, run.tail()
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], run.tail()
        assert sandbox.stats()["calls"]["total"] == 0
