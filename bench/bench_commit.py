"""Benchmark: committing a run of 1,000,000 staged hits, against DuckDB's own time for the same dedupe.

    .venv/bin/python bench/bench_commit.py                    # 1,000,000 hits
    .venv/bin/python bench/bench_commit.py --hits 100000      # quicker

Stages ``--hits`` hits (100 a seed, ~1 in 4 a product another seed found too; realistic titles,
prices and URLs) as a crawl stages them (``hits.parquet`` and ``seeds.parquet``, pipeline/runs/),
then times, each in its own process so its peak RSS is its own alone (VmHWM, the high-water mark of the
process's own memory since its exec: ``ru_maxrss`` would count the parent's memory at the fork, staging
included, in every case alike):

- ``ours``: ``pipeline.runs.tables.build_tables``, what a commit does before its renames: products (one
  row per num_iid: first seed given, then best position), matches and seeds, written as the
  project's Parquet and CSV files (DATASET_FORMATS=parquet,csv) and, in a second case, Parquet only;
- ``duckdb``: DuckDB alone running the same products dedupe over the same file (and the offer groups
  worked out once before, untimed; ``ours`` works them out each time) into one
  Parquet file (``COPY (... QUALIFY row_number() ...) TO ... (FORMAT parquet)``), with the same
  memory limit: the floor of what building products costs;
- ``duckdb-all``: DuckDB's COPY of all three tables, Parquet and CSV, the like-for-like of ``ours``.

``--repeat`` rounds (default 2); each case's fastest time and its highest peak are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HITS_PER_SEED = 100
CASES = ("ours", "ours-parquet", "duckdb", "duckdb-all")


def stage(staging: Path, n_hits: int, pic_url: str = "https://img.alicdn.com/imgextra/i4/{}.jpg",
          source: str = "photos/{}.jpg") -> None:
    """``hits.parquet`` and ``seeds.parquet`` as a crawl of ``n_hits`` hits stages them (``pic_url`` and
    ``source`` are formatted with the num_iid and the seed's number)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from items.schema import HITS, STAGED_SEEDS

    staging.mkdir(parents=True, exist_ok=True)
    schema = HITS.arrow_schema
    crawled_at = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    rng = np.random.default_rng(0)
    chunk = 100_000
    with pq.ParquetWriter(staging / "hits.parquet", schema, compression="zstd") as writer:
        for start in range(0, n_hits, chunk):
            i = np.arange(start, min(start + chunk, n_hits))
            seed = i // HITS_PER_SEED
            num_iid = 600_000_000_000 + (i * 7919) % (n_hits * 3 // 4 + 1)
            price = np.round(9.9 + rng.random(len(i)) * 500, 2)
            columns = {
                "run_id": pa.array(["20261130T040000Z-bench"] * len(i)),
                "seed_id": pa.array([f"seed-{s:06d}" for s in seed]),
                "seed_rank": pa.array(seed, pa.int32()),
                "view": pa.array([1] * len(i), pa.int32()),
                "num_iid": pa.array(num_iid, pa.int64()),
                "page": pa.array(1 + (i % HITS_PER_SEED) // 20, pa.int32()),
                "position": pa.array(i % HITS_PER_SEED + 1, pa.int32()),
                "cat": pa.array([None if s % 3 else "50015374" for s in seed], pa.string()),
                "score": pa.nulls(len(i), pa.float64()),
                "title": pa.array([f"夏季新款 纯棉 T恤 短袖 男女同款 宽松 {n}" for n in num_iid.tolist()]),
                "pic_url": pa.array([pic_url.format(n) for n in num_iid.tolist()]),
                "detail_url": pa.array([f"https://item.taobao.com/item.htm?id={n}" for n in num_iid.tolist()]),
                "seller_nick": pa.array([f"shop{n % 997}" for n in num_iid.tolist()]),
                "is_tmall": pa.array(num_iid % 2 == 0),
                "price_min": pa.array(price).cast(schema.field("price_min").type),
                "price_max": pa.array(price).cast(schema.field("price_max").type),
                "price_raw": pa.array([f"{p:.2f}" for p in price]),
                "coupon_price": pa.nulls(len(i), schema.field("coupon_price").type),
                "promotion_price": pa.nulls(len(i), schema.field("promotion_price").type),
                "sales": pa.array((i * 104729) % 5000, pa.int64()),
                "sales_kind": pa.array(["paid"] * len(i)),
                "sales_raw": pa.array([f"{s}人付款" for s in (i * 104729) % 5000]),
                # a picture a product: 1 in 8 a reseller's copy of another's (its hash a bit or two off)
                "pic_hash": pa.array([f"{(n - 1 if n % 8 == 1 else n) * 0x9E3779B97F4A7C15 % 2**64:016x}"
                                      for n in num_iid.tolist()]),
                "pic_colour": pa.array(["80" * 48] * len(i)),
                "crawled_at": pa.array([crawled_at] * len(i), schema.field("crawled_at").type),
                "run_started_at": pa.array([crawled_at] * len(i), schema.field("run_started_at").type),
            }
            writer.write_table(pa.table([columns[f.name] for f in schema], schema=schema))
    n_seeds = -(-n_hits // HITS_PER_SEED)
    seeds_schema = STAGED_SEEDS.arrow_schema
    seeds = {
        "run_id": pa.array(["20261130T040000Z-bench"] * n_seeds),
        "seed_id": pa.array([f"seed-{s:06d}" for s in range(n_seeds)]),
        "source": pa.array([source.format(s) for s in range(n_seeds)]),
        "sha256": pa.array(["ab" * 32] * n_seeds),
        "status": pa.array(["ok"] * n_seeds),
        "error_code": pa.nulls(n_seeds, pa.string()),
        "error_msg": pa.nulls(n_seeds, pa.string()),
        "total_results": pa.array([HITS_PER_SEED] * n_seeds, pa.int64()),
        "pages_fetched": pa.array([5] * n_seeds, pa.int32()),
        "items_found": pa.array([HITS_PER_SEED] * n_seeds, pa.int64()),
        "seed_rank": pa.array(range(n_seeds), pa.int32()),
        "view": pa.array([1] * n_seeds, pa.int32()),
        "region_source": pa.array(["none"] * n_seeds),
        "run_started_at": pa.nulls(n_seeds, seeds_schema.field("run_started_at").type),
    }
    # The columns left out are null (region, main_region: a whole photo searched, on TOP).
    pq.write_table(pa.table([seeds.get(f.name, pa.nulls(n_seeds, f.type)) for f in seeds_schema],
                            schema=seeds_schema),
                   staging / "seeds.parquet", compression="zstd")


def run_case(case: str, staging: Path, out: Path, file_rows: int) -> dict[str, Any]:
    """One case, in this process: its rows written."""
    if case.startswith("ours"):
        from pipeline.runs.identity import RunInfo
        from pipeline.runs.tables import build_tables

        formats = ["parquet"] if case == "ours-parquet" else ["parquet", "csv"]
        run = RunInfo("20261130T040000Z-bench", datetime(2026, 11, 30, 4, 0, tzinfo=UTC), "2026-11-30")
        files = build_tables(staging, out, run, formats, file_rows, "zstd")
        rows: dict[str, int] = {}
        for f in files:
            if f["format"] == "parquet":
                rows[f["table"]] = rows.get(f["table"], 0) + f["rows"]
        return rows
    import duckdb

    from pipeline.runs.tables import COMMIT_MEMORY_LIMIT, TABLE_QUERIES

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{COMMIT_MEMORY_LIMIT}'")
    con.execute("SET temp_directory = ?", [str(out / "duckdb-spill")])
    con.execute("SET preserve_insertion_order = false")
    out.mkdir(parents=True, exist_ok=True)
    staged = {"hits": str(staging / "hits.parquet"), "seeds": str(staging / "seeds.parquet"),
              "offers": str(staging / "offers.parquet")}
    # (the offers table is built in steps from the products rows ours kept: not a query of the staging alone)
    tables = ["products"] if case == "duckdb" else [name for name in TABLE_QUERIES if name != "offers"]
    formats = ["parquet"] if case == "duckdb" else ["parquet", "csv"]
    rows = {}
    for name in tables:
        query = TABLE_QUERIES[name]
        for key, path in staged.items():
            query = query.replace(f"${key}", f"'{path}'")
        for fmt in formats:
            options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER"
            con.execute(f"COPY ({query}) TO '{out / f'{name}.{fmt}'}' ({options})")
        rows[name] = con.execute(f"SELECT count(*) FROM read_parquet('{out / f'{name}.parquet'}')").fetchone()[0]
    return rows


def measure(case: str, staging: Path, out: Path, file_rows: int) -> dict[str, Any]:
    """Run ``case`` in a child process: seconds of its work (imports excluded), peak RSS (MB), rows per table."""
    command = [sys.executable, __file__, "--case", case, "--staging", str(staging), "--out", str(out),
               "--file-rows", str(file_rows)]
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if not process.stdout:  # failed otherwise than out of memory: its traceback is above
        sys.exit(f"bench_commit: {case} failed")
    result: dict[str, Any] = json.loads(process.stdout)
    if process.returncode != 0:  # said as a row (DuckDB alone can run out of its memory)
        return {**result, "rows": {}, "seconds": float("nan"), "failed": True}
    return result


def own_peak_mb() -> float:
    """This process's peak RSS since its exec, in MB (Linux's VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hits", type=int, default=1_000_000, help="staged hits (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every case (default 2)")
    parser.add_argument("--file-rows", type=int, default=100_000,
                        help="rows per dataset file in ours, DATASET_BATCH_ITEMS (default 100,000)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--staging", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        # Imported before the clock starts, in every case alike.
        import duckdb
        import pyarrow

        import pipeline.runs.tables  # noqa: F401

        started = time.perf_counter()
        try:
            rows = run_case(args.case, args.staging, args.out, args.file_rows)
        except duckdb.OutOfMemoryException as exc:
            print(f"{args.case}: {exc}".splitlines()[0], file=sys.stderr)
            print(json.dumps({"peak_rss_mb": own_peak_mb()}))
            sys.exit(1)
        print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_mb": own_peak_mb()}))
        return

    import duckdb
    import pyarrow

    print(f"machine: {platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
          f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        staging = Path(tmp) / "staging"
        started = time.perf_counter()
        stage(staging, args.hits)
        # The offer groups, once: DuckDB's cases read them as ours works them out (ours does it each time).
        from pipeline.runs.offers import stage_offers
        from pipeline.runs.tables import database

        with database(staging) as con:
            stage_offers(con, str(staging / "hits.parquet"), staging / "offers.parquet", staging / "none.parquet")
        size = sum(p.stat().st_size for p in staging.iterdir()) / 1e6
        print(f"staged: {args.hits:,} hits of {-(-args.hits // HITS_PER_SEED):,} seeds, {size:.0f} MB of Parquet, "
              f"in {time.perf_counter() - started:.1f} s")
        results: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        for round_ in range(args.repeat):
            for case in CASES:
                out = Path(tmp) / f"{case}-{round_}"
                results[case].append(measure(case, staging, out, args.file_rows))
        print(f"{'case':<14} {'seconds':>8} {'peak RSS MB':>12}  rows")
        best = {}
        for case in CASES:
            runs = [r for r in results[case] if not r.get("failed")]
            if not runs:
                print(f"{case:<14} {'failed':>8} {max(r['peak_rss_mb'] for r in results[case]):>12.0f}  "
                      f"(out of its memory limit: its error above)")
                best[case] = float("nan")
                continue
            best[case] = min(r["seconds"] for r in runs)
            peak = max(r["peak_rss_mb"] for r in runs)
            rows = ", ".join(f"{k} {v:,}" for k, v in sorted(runs[0]["rows"].items()))
            print(f"{case:<14} {best[case]:>8.2f} {peak:>12.0f}  {rows}")
        if any(r.get("failed") for r in results["ours"] + results["ours-parquet"]):
            sys.exit("bench_commit: our commit failed")
        products = {case: results[case][0]["rows"]["products"] for case in CASES if results[case][0]["rows"]}
        same = len(set(products.values())) == 1
        print(f"products rows agree across cases: {same} ({products['ours']:,})")
        print(f"ours / duckdb-all time: {best['ours'] / best['duckdb-all']:.2f}x; "
              f"ours-parquet / duckdb (products dedupe alone): {best['ours-parquet'] / best['duckdb']:.2f}x")
        if not same:
            sys.exit("bench_commit: the cases built different products tables: their times do not compare")


if __name__ == "__main__":
    main()
