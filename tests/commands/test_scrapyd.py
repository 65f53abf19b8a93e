"""The project under a real scrapyd (Scrapy's own crawl service), egg-less from its directory, as README says.

scrapyd is started in the repository (it finds scrapy.cfg's ``imagesearch = pipeline.settings``), with its
own configuration in ``~/.scrapyd.conf`` of a temporary HOME; a crawl is scheduled with schedule.json and
its datasets are those of the same crawl run by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from datasets import REPO, assert_same_datasets, free_port, load_dataset, run_crawl, write_seed_photos

from sandbox.testing import SandboxProcess


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_a_crawl_scheduled_through_scrapyd_writes_the_datasets_of_the_same_crawl_by_hand(tmp_path: Path) -> None:
    write_seed_photos(tmp_path / "photos", 4)
    options = {"IMAGESEARCH_QUOTA": "", "DATASET_FORMATS": "parquet", "DATASET_RUN_ID": "nightly"}
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    (home / ".scrapyd.conf").write_text(
        f"[scrapyd]\nbind_address = 127.0.0.1\nhttp_port = {port}\npoll_interval = 0.5\nmax_proc = 1\n"
        f"logs_dir = {tmp_path / 'logs'}\neggs_dir = {tmp_path / 'eggs'}\ndbs_dir = {tmp_path / 'dbs'}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGESEARCH_", "SCRAPY_"))}
    env["HOME"] = str(home)
    with SandboxProcess() as sandbox:
        by_hand = run_crawl(str(tmp_path / "photos"), "-a", "pages=2",
                            *(arg for name, value in options.items() for arg in ("-s", f"{name}={value}")),
                            dataset_dir=tmp_path / "by-hand", endpoint=sandbox.endpoint, pictures=True)
        assert by_hand.returncode == 0, by_hand.tail()
        with (tmp_path / "scrapyd.log").open("wb") as log:
            scrapyd = subprocess.Popen([sys.executable, "-m", "scrapyd", "--pidfile=", "--logfile=-"], cwd=REPO,
                                       env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert _get(f"{base}/daemonstatus.json")["status"] == "ok"
                    break
                except OSError:
                    assert scrapyd.poll() is None and time.monotonic() < deadline, \
                        (tmp_path / "scrapyd.log").read_text()[-3000:]
                    time.sleep(0.2)
            assert "imagesearch" in _get(f"{base}/listprojects.json")["projects"]
            assert _get(f"{base}/listspiders.json?project=imagesearch")["spiders"] == ["imagesearch"]
            form = [("project", "imagesearch"), ("spider", "imagesearch"), ("seeds", str(tmp_path / "photos")),
                    ("pages", "2"), ("setting", f"DATASET_DIR={tmp_path / 'scheduled'}"),
                    ("setting", f"IMAGESEARCH_ENDPOINT={sandbox.endpoint}"),
                    *(("setting", f"{name}={value}") for name, value in options.items())]
            with urllib.request.urlopen(f"{base}/schedule.json", urllib.parse.urlencode(form).encode(),
                                        timeout=30) as response:
                scheduled = json.loads(response.read())
            assert scheduled["status"] == "ok", scheduled
            job = scheduled["jobid"]
            deadline = time.monotonic() + 240
            while not any(j["id"] == job for j in _get(f"{base}/listjobs.json?project=imagesearch")["finished"]):
                assert time.monotonic() < deadline, (tmp_path / "scrapyd.log").read_text()[-3000:]
                time.sleep(0.5)
        finally:
            scrapyd.terminate()
            scrapyd.wait(timeout=30)
    job_log = next((tmp_path / "logs" / "imagesearch" / "imagesearch").glob(f"{job}.log")).read_text()
    assert "Traceback" not in job_log, job_log[-3000:]
    manifest = json.loads((tmp_path / "scheduled" / "_manifests" / "nightly.json").read_text())
    assert manifest["complete"] is True
    assert len(load_dataset(tmp_path / "scheduled")["seeds"]) == 4
    assert_same_datasets(tmp_path / "by-hand", tmp_path / "scheduled")
