"""Benchmark: items/s and peak memory of our pipelines + Parquet/CSV datasets against Scrapy's plain CSV feed.

    .venv/bin/python bench/bench_export.py                  # 50k and 200k items, both cases
    .venv/bin/python bench/bench_export.py --sizes 20000    # quicker

Each (case, size) runs a real Scrapy crawl in its own process, so peak RSS (ru_maxrss) is that
case's alone; ``--repeat`` rounds (default 3) run every case in turn and each case's fastest time
is reported. The spider yields ProductHit items with the messy values gateways send (docs/api.md
section 2), built on the fly so the generator itself holds no memory.

- ``ours``: the project settings: validate and normalize pipelines, every hit and seed staged
  (pipeline/runs/), then the commit building the three tables (products deduplicated by
  num_iid, matches, seeds) from the staged rows with DuckDB, in BOTH Parquet and CSV, manifest.
- ``baseline``: the same items through Scrapy's own CsvItemExporter via FEEDS, no pipelines.
- ``engine``: the same items through Scrapy with no pipelines and no feeds: the cost every case
  shares, so the report can show what each case adds per item on top of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TITLES = [
    "<span class=H>耐克</span> Air Max {n} 男鞋 &amp; 女鞋",
    "夏季新款 纯棉 T恤 短袖 {n}",
    "<b>Apple</b>/苹果 iPhone 15 Pro 手机壳 {n}",
    "  运动裤\t男 宽松 {n} ",
]
PICS = ["//g-search3.alicdn.com/img/bao/uploaded/i4/{n}.jpg", "http://img.alicdn.com/imgextra/{n}.jpg", "https://img.alicdn.com/{n}.jpg"]


def messy_price(i: int) -> Any:
    """Prices in every form gateways send, over ~3,000 distinct price points."""
    yuan = 9.9 + (i * 7919 % 3000) / 10
    form = i % 10
    if form == 0:
        return yuan  # a number
    if form == 1:
        return f"{yuan:.0f}-{yuan * 3:.0f}"  # a range
    if form == 2:
        return f"¥{yuan:.2f}"
    if form == 3:
        return f"￥ {yuan * 10:,.2f}"
    if form == 4 and i % 20 == 4:
        return ("", "面议")[i % 40 == 4]  # empty or unparseable
    return f"{yuan:.2f}"


def messy_sales(i: int) -> Any:
    """Sales as Taobao buckets them ("1万+人付款") and as exact counts ("338人付款"), numbers and strings."""
    n = i * 104729 % 5000
    form = i % 8
    if form == 0:
        return n  # a number
    if form == 1:
        return f"{n}人付款"
    if form == 2:
        return ("100+人付款", "1000+人收货", "1万+人付款", "2.0万+人付款", "10万+", "1.5w+")[i % 6]
    if form == 3:
        return f"{n / 1000:.1f}万人付款"
    if form == 4:
        return f"月销 {n}"
    if form == 5:
        return f"已售 {n:,}"
    if form == 6 and i % 16 == 6:
        return ""
    return f"{n}+"


HITS_PER_SEED = 100
CASES = ("engine", "baseline", "ours")


def make_spider(n_items: int) -> type:
    import scrapy

    from items import ProductHit, SeedSummary

    class BenchSpider(scrapy.Spider):
        name = "bench"

        async def start(self):  # type: ignore[no-untyped-def]
            crawled_at = datetime.now(UTC)
            for i in range(n_items):
                seed = i // HITS_PER_SEED
                # ids repeat across seeds (~1 in 4 hits is a duplicate); 1 in 500 has no usable id.
                num_iid = 600_000_000_000 + (i * 7919) % (n_items * 3 // 4 + 1)
                yield ProductHit(
                    title=TITLES[i % len(TITLES)].format(n=i),
                    pic_url=PICS[i % len(PICS)].format(n=num_iid),
                    price=messy_price(i),
                    sales=messy_sales(i),
                    num_iid=(str(num_iid) if i % 2 else num_iid) if i % 500 else "",
                    detail_url=f"//item.taobao.com/item.htm?id={num_iid}",
                    seller_nick=f"shop{i % 997}",
                    is_tmall=("true", "false", True, 1)[i % 4],
                    seed_id=f"seed-{seed:06d}",
                    seed_rank=seed,  # as the imagesearch spider numbers the seeds given
                    page=str(1 + (i % HITS_PER_SEED) // 20),
                    position=i % HITS_PER_SEED + 1,
                    cat=50015374 if seed % 3 == 0 else None,
                    crawled_at=crawled_at,
                )
                if i % HITS_PER_SEED == HITS_PER_SEED - 1:
                    yield SeedSummary(
                        seed_id=f"seed-{seed:06d}",
                        source=f"seeds/{seed}.jpg",
                        sha256="ab" * 32,
                        status="ok",
                        total_results=str(HITS_PER_SEED),
                        pages_fetched="5",
                        items_found=HITS_PER_SEED,
                        seed_rank=seed,
                    )

    return BenchSpider


def run_case(case: str, n_items: int, out: Path) -> dict[str, Any]:
    """Run one crawl in this process and return its figures."""
    from scrapy.crawler import CrawlerProcess
    from scrapy.settings import Settings

    settings = Settings()
    settings.setmodule("pipeline.settings", priority="project")
    settings.set("LOG_LEVEL", "WARNING")
    # The spider makes no calls: a (never contacted) gateway URL keeps the embedded sandbox from starting.
    settings.set("IMAGESEARCH_ENDPOINT", "https://gateway.invalid/router/rest")
    if case == "ours":
        settings.set("DATASET_DIR", str(out / "datasets"))
        settings.set("IMAGESEARCH_PICTURES", False)  # the writers are measured, not the listings' pictures
    elif case == "engine":
        settings.set("ADDONS", {})
        settings.set("ITEM_PIPELINES", {})
    else:
        settings.set("ADDONS", {})
        settings.set("ITEM_PIPELINES", {})
        settings.set("FEED_EXPORTERS", {"csv": "scrapy.exporters.CsvItemExporter"})
        settings.set("FEED_STORAGES", {})
        settings.set("FEEDS", {str(out / "baseline.csv"): {"format": "csv"}})
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(make_spider(n_items))
    process.crawl(crawler)
    started = time.perf_counter()
    process.start()
    elapsed = time.perf_counter() - started
    stats = crawler.stats.get_stats()
    handled = stats.get("item_scraped_count", 0) + stats.get("item_dropped_count", 0)
    if handled < n_items:
        sys.exit(f"{case}: the crawl handled {handled} of {n_items} items; see the log above")
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "case": case,
        "items": n_items,
        "seconds": elapsed,
        "items_per_s": n_items / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "scraped": stats.get("item_scraped_count", 0),
        "dropped": stats.get("item_dropped_count", 0),
        "bytes_written": written,
    }


def machine() -> str:
    import pyarrow
    import scrapy

    return (
        f"{platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
        f"{platform.processor() or platform.machine()} | scrapy {scrapy.__version__}, pyarrow {pyarrow.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,200000", help="comma-separated item counts (default 50000,200000)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of every case per size; each case's fastest run is reported (default 3)",
    )
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one case, in a child process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.case:
        print(json.dumps(run_case(args.case, sizes[0], Path(args.out))))
        return

    print(f"machine: {machine()}")
    print(
        f"{'items':>8} {'case':<9} {'seconds':>8} {'items/s':>9} {'us/item':>8} {'added us/item':>14}"
        f" {'peak RSS MB':>12} {'MB written':>11}"
    )
    ratios = []
    peak_rss: dict[str, list[float]] = {case: [] for case in CASES}
    for size in sizes:
        figures = {}
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        # Rounds of every case in turn, so that a slow spell of a shared machine hits all cases alike;
        # the fastest run of each case is reported: timing noise only ever adds time.
        for _ in range(args.repeat):
            for case in CASES:
                with tempfile.TemporaryDirectory(prefix=f"bench-{case}-") as out:
                    cmd = [
                        sys.executable, str(Path(__file__).resolve()),
                        "--case", case, "--sizes", str(size), "--out", out,
                    ]
                    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
                    if result.returncode != 0:
                        sys.exit(f"{case} {size} failed:\n{result.stderr[-3000:]}")
                    runs[case].append(json.loads(result.stdout.strip().splitlines()[-1]))
        for case in CASES:
            r = min(runs[case], key=lambda run: run["seconds"])
            r["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs[case])
            figures[case] = r
            peak_rss[case].append(r["peak_rss_mb"])
            per_item = 1e6 / r["items_per_s"]
            added = per_item - 1e6 / figures["engine"]["items_per_s"]
            print(
                f"{size:>8} {case:<9} {r['seconds']:>8.2f} {r['items_per_s']:>9.0f} {per_item:>8.1f} {added:>14.1f}"
                f" {r['peak_rss_mb']:>12.0f} {r['bytes_written'] / 1e6:>11.1f}"
            )
        ratio = figures["ours"]["items_per_s"] / figures["baseline"]["items_per_s"]
        ratios.append(ratio)
        print(
            f"{size:>8} ours/baseline throughput: {ratio:.2f}x"
            " (ours: 3 pipelines, then 3 tables x Parquet+CSV; baseline: 1 CSV)"
        )
    print("target ours >= 1.0x baseline:", "met" if min(ratios) >= 1.0 else "NOT met")
    if len(sizes) > 1:
        growth = ", ".join(f"{case} {rss[-1] - rss[0]:+.0f} MB" for case, rss in peak_rss.items())
        print(f"peak RSS from {sizes[0]} to {sizes[-1]} items: {growth}")


if __name__ == "__main__":
    main()
