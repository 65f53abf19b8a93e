"""Benchmark: a shared run on Redis with 1, 2 and 4 workers and 1 and 2 app keys: calls/s against the ideal.

Run: ``.venv/bin/python bench/bench_shared.py [--seeds 80] [--quota 20/4] [--margin 0.5]``.

For each case a fresh redis-server (Debian's, on a free loopback port) and a sandbox holding the
app keys, each with ``--quota``, and N real ``scrapy crawl imagesearch`` workers of one run (one
result page per seed, so one call per seed). Measured from the sandbox's side (its first and last
call's times): the rate after the first window, (calls - burst) / (last - first), where the burst
is the pool's quota a sliding window lets go at once, against the ideal: the sum of the keys'
rates, and against what the margin allows, sum x W / (W + margin). Redis round trips per call are
the workers' own count (stat ``shared/redis_round_trips``: EVALSHA scripts, pipelines and
commands, each one round trip) over the calls. The single-process baseline (no Redis, one key) is
measured in the same run. Every case must end with every seed ok and no quota refusal.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from pipeline.pacing.apps import Quota  # noqa: E402
from sandbox.testing import RedisServer, SandboxProcess  # noqa: E402
from tests.datasets import write_seed_photos  # noqa: E402

KEYS = ("bench-a", "bench-b")


def run_case(photos: Path, seeds: int, workers: int, keys: int, quota: Quota, margin: float, work: Path) -> dict:
    spec = f"{quota.calls}/{quota.seconds:g}"
    apps = [arg for key in KEYS[:keys] for arg in ("--app", f"{key}:{key}-secret:{spec}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    env.update({f"IMAGESEARCH_APP_SECRET_{key.upper().replace('-', '_')}": f"{key}-secret" for key in KEYS})
    out = work / f"w{workers}-k{keys}"
    with RedisServer() as redis_server, SandboxProcess(*apps) as sandbox:
        command = [
            sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={photos}", "-a", "pages=1",
            "-s", f"DATASET_DIR={out}", "-s", f"IMAGESEARCH_ENDPOINT={sandbox.endpoint}",
            "-s", "DATASET_FORMATS=parquet", "-s", "REPORT_ENABLED=false", "-s", f"IMAGESEARCH_QUOTA_MARGIN={margin}",
            "-s", "IMAGESEARCH_APP_KEYS=" + ",".join(f"{key}:{spec}" for key in KEYS[:keys]),
            "-s", "LOG_LEVEL=WARNING",
        ]
        if workers:
            command += ["-s", f"IMAGESEARCH_REDIS_URL={redis_server.url}", "-s", "DATASET_RUN_ID=bench",
                        "-s", "IMAGESEARCH_REDIS_FLUSH_SECONDS=2"]
        started = time.monotonic()
        processes = [subprocess.Popen(command + (["-s", f"IMAGESEARCH_WORKER=w{i}"] if workers else []), cwd=REPO,
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for i in range(max(1, workers))]
        codes = [process.wait(timeout=1200) for process in processes]
        wall = time.monotonic() - started
        stats = sandbox.stats()
    if any(codes):
        errors = [process.stderr.read().decode()[-2000:] for process in processes if process.stderr]  # type: ignore[union-attr]
        raise SystemExit(f"a worker failed ({codes}):\n{errors}")
    manifest = json.loads(next((out / "_manifests").glob("*.json")).read_text())
    calls = stats["calls"]["total"]
    burst = quota.calls * keys
    span = stats["calls"]["last_at"] - stats["calls"]["first_at"]
    rate = (calls - burst) / span if span > 0 and calls > burst else float("nan")  # nan: all in the burst
    ideal = quota.rate * keys
    trips = sum(int(w.get("redis_round_trips", 0)) for w in manifest.get("workers", {}).values())
    assert stats["quota_refused"] == 0, stats
    assert manifest["rows"]["parquet"]["seeds"] == seeds
    return {"workers": workers, "keys": keys, "calls": calls, "span": span, "wall": wall, "rate": rate,
            "ideal": ideal, "margin_bound": ideal * quota.seconds / (quota.seconds + margin),
            "trips_per_call": trips / calls if workers else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=80)
    parser.add_argument("--quota", default="10/2", help="each key's quota, CALLS/SECONDS (default 10/2)")
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run (default 1,2,4)")
    parser.add_argument("--keys", default="1,2", help="app key counts to run (default 1,2; at most 2)")
    args = parser.parse_args()
    quota = Quota.parse(args.quota)
    print(f"# bench_shared: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{args.seeds} seeds x 1 page, each key {args.quota}, margin {args.margin} s")
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as scratch:
        work = Path(scratch)
        photos = work / "photos"
        write_seed_photos(photos, args.seeds)
        rows = [run_case(photos, args.seeds, 0, 1, quota, args.margin, work)]  # the baseline: no Redis
        for keys in (int(k) for k in args.keys.split(",")):
            for workers in (int(w) for w in args.workers.split(",")):
                rows.append(run_case(photos, args.seeds, workers, keys, quota, args.margin, work))
    print("| workers | keys | calls | span after 1st call | calls/s after the burst | ideal (sum of quotas) | "
          "ideal with margin | of ideal | Redis round trips / call | wall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        label = "1, no Redis (baseline)" if row["workers"] == 0 else str(row["workers"])
        print(f"| {label} | {row['keys']} | {row['calls']} | {row['span']:.2f} s | {row['rate']:.2f} | "
              f"{row['ideal']:.2f} | {row['margin_bound']:.2f} | {row['rate'] / row['ideal']:.0%} | "
              f"{row['trips_per_call']:.2f} | {row['wall']:.1f} s |")


if __name__ == "__main__":
    main()
