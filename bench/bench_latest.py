"""Benchmark: the commit-time cost of products_latest after a year of daily runs, against rebuilding it.

    .venv/bin/python bench/bench_latest.py                          # 365 daily runs of 10,000 products
    .venv/bin/python bench/bench_latest.py --days 30 --products 2000

Simulates ``--days`` daily runs into one DATASET_DIR (Parquet only): each day a run finds
``--products`` products drawn from a catalogue twice that size (so some come and go, and every one
is seen again on some later day), with prices and sales that move. Each run is staged as a crawl
stages it and committed by the crawl's own ``pipeline.runs.commit.commit_staged``. At checkpoints, before
that day's commit, it times ``build_latest`` both ways on the same staged run (into a scratch
directory, one process, imports excluded):

- ``incremental``: what a commit does, the snapshot before it plus the run's products;
- ``rebuild``: the baseline, products_latest rebuilt from the whole Parquet ``products`` history.

Both must give the same snapshot, or the benchmark fails. It reports for each checkpoint the
history's rows, the snapshot's rows and both times, and the whole commit's time (every table,
products_latest included) on the first and last days.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from items.schema import HITS, STAGED_SEEDS  # noqa: E402 - after the path is set
from pipeline.runs.commit import commit_staged  # noqa: E402
from pipeline.runs.identity import RunInfo, staging_dir  # noqa: E402
from pipeline.runs.latest import build_latest  # noqa: E402
from pipeline.runs.locks import snapshots_locked  # noqa: E402
from pipeline.runs.offers import stage_offers  # noqa: E402
from pipeline.runs.tables import database  # noqa: E402

FIRST_DAY = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
HITS_PER_SEED = 100


def stage(root: Path, day: int, products: int, rng: np.random.Generator) -> RunInfo:
    """Stage day ``day``'s run: ``products`` distinct products over ``products / 100`` seeds."""
    started = FIRST_DAY + timedelta(days=day)
    run = RunInfo(f"{started:%Y%m%dT%H%M%SZ}-bench", started, started.date().isoformat())
    staging = staging_dir(root, run.run_id)
    staging.mkdir(parents=True, exist_ok=True)
    num_iid = 600_000_000_000 + rng.choice(2 * products, size=products, replace=False).astype(np.int64)
    i = np.arange(products)
    seed = i // HITS_PER_SEED
    price = np.round(9.9 + (num_iid % 500) + rng.random(products) * 5, 2)
    sales = (num_iid % 5000 + day * 3).astype(np.int64)
    schema = HITS.arrow_schema
    columns = {
        "run_id": pa.array([run.run_id] * products),
        "run_started_at": pa.array([started] * products, schema.field("run_started_at").type),
        "seed_id": pa.array([f"seed-{s:05d}" for s in seed]),
        "seed_rank": pa.array(seed, pa.int32()),
        "view": pa.array([1] * products, pa.int32()),
        "num_iid": pa.array(num_iid, pa.int64()),
        "page": pa.array(1 + (i % HITS_PER_SEED) // 20, pa.int32()),
        "position": pa.array(i % HITS_PER_SEED + 1, pa.int32()),
        "cat": pa.nulls(products, pa.string()),
        "score": pa.nulls(products, pa.float64()),
        "title": pa.array([f"夏季新款 纯棉 T恤 短袖 男女同款 宽松 {n}" for n in num_iid.tolist()]),
        "pic_url": pa.array([f"https://img.alicdn.com/imgextra/i4/{n}.jpg" for n in num_iid.tolist()]),
        "detail_url": pa.array([f"https://item.taobao.com/item.htm?id={n}" for n in num_iid.tolist()]),
        "seller_nick": pa.array([f"shop{n % 997}" for n in num_iid.tolist()]),
        "is_tmall": pa.array(num_iid % 2 == 0),
        "price_min": pa.array(price).cast(schema.field("price_min").type),
        "price_max": pa.array(price).cast(schema.field("price_max").type),
        "price_raw": pa.array([f"{p:.2f}" for p in price]),
        "pic_hash": pa.array([f"{n * 0x9E3779B97F4A7C15 % 2**64:016x}" for n in num_iid.tolist()]),
        "pic_colour": pa.array(["80" * 48] * products),
        "coupon_price": pa.nulls(products, schema.field("coupon_price").type),
        "promotion_price": pa.nulls(products, schema.field("promotion_price").type),
        "sales": pa.array(sales, pa.int64()),
        "sales_kind": pa.array(["paid"] * products),
        "sales_raw": pa.array([f"{s}人付款" for s in sales]),
        "crawled_at": pa.array([started + timedelta(seconds=int(s) * 4) for s in seed],
                               schema.field("crawled_at").type),
    }
    pq.write_table(pa.table([columns[f.name] for f in schema], schema=schema), staging / "hits.parquet")
    seeds_schema = STAGED_SEEDS.arrow_schema
    n_seeds = int(seed[-1]) + 1
    seeds = {f.name: pa.nulls(n_seeds, f.type) for f in seeds_schema}
    seeds.update({
        "run_id": pa.array([run.run_id] * n_seeds), "seed_id": pa.array([f"seed-{s:05d}" for s in range(n_seeds)]),
        "status": pa.array(["ok"] * n_seeds), "seed_rank": pa.array(range(n_seeds), pa.int32()),
        "run_started_at": pa.array([started] * n_seeds, seeds_schema.field("run_started_at").type),
    })
    pq.write_table(pa.table([seeds[f.name] for f in seeds_schema], schema=seeds_schema), staging / "seeds.parquet")
    with database(staging) as con:  # the offer groups, as a commit works them out before products_latest
        stage_offers(con, str(staging / "hits.parquet"), staging / "offers.parquet", staging / "none.parquet")
    return run


def timed_latest(root: Path, run: RunInfo, scratch: Path, rebuild: bool) -> tuple[float, pa.Table]:
    """Seconds ``build_latest`` took, into ``scratch``, and the snapshot it built."""
    started = time.perf_counter()
    with snapshots_locked(root):
        snapshot = build_latest(root, staging_dir(root, run.run_id), scratch, run, ["parquet"], "zstd", rebuild)
    seconds = time.perf_counter() - started
    (built,) = snapshot["files"]
    table = pq.read_table(scratch / built["path"])
    (scratch / built["path"]).unlink()
    return seconds, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365, help="daily runs (default 365)")
    parser.add_argument("--products", type=int, default=10_000, help="products a run finds (default 10,000)")
    parser.add_argument("--checkpoints", default="1,30,90,180,365",
                        help="days to time both ways on (default 1,30,90,180,365; clipped to --days)")
    args = parser.parse_args()
    checkpoints = sorted({min(int(d), args.days) for d in args.checkpoints.split(",")})

    import duckdb

    print(f"machine: {platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
          f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}")
    print(f"simulated: {args.days} daily runs of {args.products:,} products (of {2 * args.products:,})")
    rng = np.random.default_rng(365)
    commits: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-latest-") as tmp:
        root, scratch = Path(tmp) / "datasets", Path(tmp) / "scratch"
        print(f"{'day':>5} {'history rows':>13} {'latest rows':>12} {'incremental s':>14} {'rebuild s':>10} "
              f"{'rebuild/incr':>13}")
        started = time.perf_counter()
        for day in range(1, args.days + 1):
            run = stage(root, day - 1, args.products, rng)
            if day in checkpoints:
                history = (day - 1) * args.products
                incremental, updated = timed_latest(root, run, scratch, rebuild=False)
                rebuild, rebuilt = timed_latest(root, run, scratch, rebuild=True)
                if not updated.equals(rebuilt):
                    sys.exit(f"day {day}: the incremental snapshot ({updated.num_rows:,} rows) is not the rebuilt one")
                print(f"{day:>5} {history:>13,} {updated.num_rows:>12,} {incremental:>14.3f} {rebuild:>10.3f} "
                      f"{rebuild / incremental:>12.1f}x")
            commit_started = time.perf_counter()
            commit_staged(root, run, ["parquet"], 0, "zstd", "finished", {})
            commits[day] = time.perf_counter() - commit_started
        print(f"whole commit (every table, products_latest included): day 1 {commits[1]:.3f} s, "
              f"day {args.days} {commits[args.days]:.3f} s; {args.days} days simulated in "
              f"{time.perf_counter() - started:.0f} s")
        size = sum(p.stat().st_size for p in (root / "parquet").rglob("*.parquet")) / 1e6
        latest = (root / "parquet/products_latest/products_latest.parquet").stat().st_size / 1e6
        print(f"on disk: {size:.0f} MB of Parquet, products_latest {latest:.1f} MB")


if __name__ == "__main__":
    main()
