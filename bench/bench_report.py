"""Benchmark: the run report of a 5,000-seed run: its size, the time to write it, and its first paint.

    .venv/bin/python bench/bench_report.py                 # 5,000 seeds of 100 matches each
    .venv/bin/python bench/bench_report.py --seeds 200     # quicker

Builds a synthetic committed run (bench_commit.stage: 100 hits a seed, then pipeline.runs.commit.commit_staged),
with a real photo per seed (a 480 px JPEG on disk) and its listings' pictures served by a local HTTP
server, then:

- writes its report (pipeline.monitor.report.write_report, REPORT_PAGE_SEEDS=50 as by default) and gives
  the file's size and the seconds it took;
- opens it from disk in Debian's Chromium (Playwright, headless): first contentful paint,
  DOMContentLoaded and load (from the page's own performance timeline), the JS heap, the first
  seed's pictures loaded, and the time to switch to the last page;
- the baseline, in the same run: the report of a 50-seed run (one page), and the same run's
  report on a single page (REPORT_PAGE_SEEDS = every seed), the design the paging avoids.

``--repeat`` opens each report that many times (default 3); the median is reported.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_commit import HITS_PER_SEED, stage  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _jpeg(side: int, k: int) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (side, side), ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256))
    draw = ImageDraw.Draw(img)
    draw.ellipse((side // 5, side // 5, side * 4 // 5, side * 3 // 4), fill=((k * 13) % 256, 200, 90))
    draw.rectangle((side // 10, side * 2 // 3, side // 2, side * 9 // 10), fill=(30, (k * 7) % 256, 160))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


class _Pictures(BaseHTTPRequestHandler):
    """Any /img/<n>.jpg: one listing picture (as the platform's CDN would serve it)."""

    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Cache-Control", "max-age=86400")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def build_run(root: Path, seeds: int, photos: Path, pictures: str) -> str:
    """A committed run of ``seeds`` seeds (photos under ``photos``): its run id."""
    from pipeline.runs.commit import commit_staged
    from pipeline.runs.identity import RunInfo, staging_dir

    run_id = "20261130T040000Z-bench"
    run = RunInfo(run_id, datetime(2026, 11, 30, 4, 0, tzinfo=UTC), "2026-11-30")
    photos.mkdir(parents=True, exist_ok=True)
    for k in range(seeds):
        (photos / f"{k}.jpg").write_bytes(_jpeg(480, k))
    stage(staging_dir(root, run_id), seeds * HITS_PER_SEED, pic_url=pictures + "/img/{}.jpg",
          source=str(photos) + "/{}.jpg")
    stats = {"imagesearch/gateway": "top", "imagesearch/endpoint_host": "eco.taobao.com",
             "imagesearch/calls": seeds * 5, "progress/calls_planned": seeds * 5, "pacing/quota": "1000/3600",
             "pacing/waits": seeds * 5 - 1000, "pacing/wait_seconds": 3600.0 * seeds * 5 / 1000}
    commit_staged(root, run, ["parquet"], 100_000, "zstd", "finished", stats)
    return run_id


def open_report(browser: Any, path: Path, pages: int, seeds: int) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    started = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    loaded = time.perf_counter() - started
    page.wait_for_function("Array.from(document.querySelectorAll('#seed-1 img')).every(i => i.complete "
                           "&& i.naturalWidth > 0)", timeout=60_000)
    pictures = time.perf_counter() - started
    timing = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        return {fcp: fcp ? fcp.startTime : null, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                heap: performance.memory ? performance.memory.usedJSHeapSize : null};
    }""")
    switch = 0.0
    if pages > 1:
        started = time.perf_counter()
        page.select_option(".pager select >> nth=0", str(pages))
        page.wait_for_selector(f"#seed-{seeds}")
        switch = time.perf_counter() - started
    page.close()
    if errors:
        sys.exit(f"bench_report: the report raised: {errors[:3]}")
    return {"fcp_ms": timing["fcp"], "dcl_ms": timing["dcl"], "load_ms": timing["load"],
            "heap_mb": (timing["heap"] or 0) / 1e6, "pictures_s": pictures, "goto_s": loaded, "last_page_s": switch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5000, help="seeds of the run (default 5,000)")
    parser.add_argument("--baseline-seeds", type=int, default=50, help="seeds of the baseline run (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="times each report is opened (default 3)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"bench_report: no Chromium at {CHROMIUM}: make install (as root) installs Debian's chromium")
    import duckdb
    from playwright.sync_api import sync_playwright

    from pipeline.monitor.report import thumbnail, vega_bundle, write_report

    print(f"machine: {platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
          f"duckdb {duckdb.__version__}")
    _Pictures.body = _jpeg(400, 7)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pictures = f"http://127.0.0.1:{server.server_address[1]}"
    vega_bundle()  # once per process, whatever the run: not counted in a report's time
    cases: list[tuple[str, int, int]] = [("baseline", args.baseline_seeds, 50), ("paged", args.seeds, 50),
                                         ("one page", args.seeds, args.seeds)]
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        print(f"Chromium {browser.version} headless; {args.repeat} opens a report, median")
        roots: dict[int, tuple[Path, str]] = {}
        for n in sorted({args.baseline_seeds, args.seeds}):
            started = time.perf_counter()
            root = Path(tmp) / f"run-{n}"
            roots[n] = (root, build_run(root, n, Path(tmp) / f"photos-{n}", pictures))
            took = time.perf_counter() - started
            print(f"built: a run of {n:,} seeds, {n * HITS_PER_SEED:,} matches, in {took:.1f} s")
        print(f"{'case':<10} {'seeds':>6} {'per page':>8} {'MB':>7} {'write s':>8} {'FCP ms':>7} {'DCL ms':>7} "
              f"{'load ms':>8} {'heap MB':>8} {'pics s':>7} {'last page s':>11}")
        for name, n, per_page in cases:
            root, run_id = roots[n]
            out = Path(tmp) / f"{name.replace(' ', '-')}.html"
            thumbnail.cache_clear()  # every case decodes its photos itself
            started = time.perf_counter()
            write_report(root, run_id, page_seeds=per_page, out=out)
            written = time.perf_counter() - started
            pages = -(-n // per_page)
            opens = [open_report(browser, out, pages, n) for _ in range(args.repeat)]
            m = {key: statistics.median(o[key] for o in opens) for key in opens[0]}
            print(f"{name:<10} {n:>6,} {per_page:>8,} {out.stat().st_size / 1e6:>7.1f} {written:>8.1f} "
                  f"{m['fcp_ms']:>7.0f} {m['dcl_ms']:>7.0f} {m['load_ms']:>8.0f} {m['heap_mb']:>8.1f} "
                  f"{m['pictures_s']:>7.2f} {m['last_page_s']:>11.2f}")
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main()
