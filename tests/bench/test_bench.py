"""The benchmark scripts still run and report their figures (tiny sizes: this checks they work, not how fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from datasets import REPO


def bench(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_export_reports_ours_against_scrapys_csv_feed_with_memory() -> None:
    out = bench("bench_export.py", "--sizes", "600,1200", "--repeat", "1")
    assert out.startswith("machine: ") and "scrapy 2.19" in out
    for size in ("600", "1200"):
        assert {
            line.split()[1] for line in out.splitlines() if line.split()[:1] == [size]
        } >= {"engine", "baseline", "ours"}
        assert f"{size} ours/baseline throughput: " in out
    assert "target ours >= 1.0x baseline: " in out
    assert "peak RSS from 600 to 1200 items: engine " in out


@pytest.mark.parametrize(("script", "args", "expected"), [
    ("bench_sandbox.py", ("--requests", "20", "--warmup", "2"), "HTTP search over loopback"),
    ("bench_quota.py", ("--seeds", "30", "--quota", "20/2"), "target (paced: span"),
    ("bench_shared.py", ("--seeds", "16", "--quota", "20/1", "--workers", "2", "--keys", "2"), "| 2 | 2 | 16 |"),
    ("bench_serve.py", ("--requests", "4", "--clients", "1,2", "--layout", "pinned,remote"),
     "goal: added p50 at 1 client "),
    ("bench_matches.py", ("--photos", "6"), "| cluttered | given region | 1.00 | 1.00 | 6 |"),
    ("bench_offers.py", ("--quick", "--seeds", "3"), "defaults 10 bits, colour 12: precision 0.995, recall 0.926"),
])
def test_the_other_benchmarks_run(script: str, args: tuple[str, ...], expected: str) -> None:
    assert expected in bench(script, *args)


def test_compare_serve_times_two_checkouts_services_in_turns(tmp_path: Path) -> None:
    # Against this checkout itself: the script's own work, not a difference, is what is checked.
    out = bench("compare_serve.py", "--against", str(REPO), "--requests", "4", "--turn", "2")
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"direct", "this code", str(REPO)} <= set(rows), out
    assert "this code - the other, p50: " in out
    result = subprocess.run([sys.executable, str(REPO / "bench" / "compare_serve.py"), "--against", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "not a checkout of this project" in result.stderr, result.stderr[-2000:]


def test_bench_memory_reports_peak_rss_against_the_smallest_crawl() -> None:
    out = bench("bench_memory.py", "--seeds", "4,12", "--side", "256", "--quota", "50/1")
    assert out.startswith("machine: ") and "photos: 12 of 256 px" in out
    assert "target peak RSS flat in seed count (<= 1.2x from 4 to 12 seeds): " in out


def test_bench_commit_reports_ours_against_duckdb_alone() -> None:
    out = bench("bench_commit.py", "--hits", "3000", "--repeat", "1", "--file-rows", "700")  # several files a table
    assert "staged: 3,000 hits of 30 seeds" in out
    assert "products rows agree across cases: True" in out
    assert "matches 3,000" in next(line for line in out.splitlines() if line.startswith("ours "))
    for case in ("ours", "ours-parquet", "duckdb", "duckdb-all"):
        assert any(line.split()[:1] == [case] for line in out.splitlines()), out


def test_bench_latest_reports_the_snapshot_against_a_rebuild_from_the_history() -> None:
    out = bench("bench_latest.py", "--days", "6", "--products", "300", "--checkpoints", "1,6")
    assert out.startswith("machine: ") and "simulated: 6 daily runs of 300 products" in out
    days = [line.split()[0] for line in out.splitlines() if line.split()[:1] in (["1"], ["6"])]
    assert days == ["1", "6"]
    assert "whole commit (every table, products_latest included): day 1 " in out


def test_bench_report_reports_size_and_first_paint_against_a_one_page_baseline() -> None:
    out = bench("bench_report.py", "--seeds", "60", "--baseline-seeds", "10", "--repeat", "1")
    assert out.startswith("machine: ") and "Chromium " in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["baseline"], ["paged"])}
    assert rows["baseline"][1] == "10" and rows["paged"][1] == "60", out
    assert any(line.startswith("one page ") for line in out.splitlines()), out
