"""Benchmark: this code's ``scrapy serve`` against another checkout's, in turns in one run (a change's effect).

Not run by ``make bench`` (it needs the other checkout).

Run: ``git worktree add /tmp/before HEAD~1`` (any other checkout of the project), then
``.venv/bin/python bench/compare_serve.py --against /tmp/before [--requests 600] [--clients 1]``.
Both services run at once against one sandbox, with this checkout's Python and packages; the direct
calls, this code's searches and the other's take turns of ``--turn`` searches on the same client threads
and keep-alive connections (which of the two goes first alternates), so that a shared machine's changing
load weighs on all three alike. Every search is of a photo neither service has seen (one gateway call).

Whole runs of bench_serve.py, one after the other, cannot tell a 0.5 ms change on a noisy 2-core machine
(the direct p50 itself moves by 1-2 ms between them); turns within one run can. ``--layout pinned`` (the
default, as bench_serve.py's) puts the sandbox on the first CPU and the rest on the others.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import Clients, Direct, Service, percentile, photos, start_service

from sandbox.testing import SandboxProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, required=True, help="another checkout of the project")
    parser.add_argument("--requests", type=int, default=600, help="searches of each kind")
    parser.add_argument("--turn", type=int, default=50, help="searches of one kind in a row")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients")
    parser.add_argument("--layout", choices=("pinned", "shared"), default="pinned")
    args = parser.parse_args()
    other = args.against.resolve()
    if not (other / "scrapy.cfg").is_file() or not (other / "pipeline").is_dir():
        raise SystemExit(f"--against {other}: not a checkout of this project (no scrapy.cfg and pipeline/)")
    cpus = sorted(os.sched_getaffinity(0))
    if args.layout == "pinned" and len(cpus) < 2:
        raise SystemExit("--layout pinned needs 2 CPUs: give --layout shared")
    n, turn = args.requests, max(args.turn, args.clients)
    print(f"machine: {platform.platform()} | python {platform.python_version()} | cpus {os.cpu_count()} | "
          f"{platform.processor() or platform.machine()}")
    pool = photos(3 * n + 12, first=3)
    names = ("direct", "this code", str(other))
    everywhere = os.sched_getaffinity(0)
    try:
        if args.layout == "pinned":
            os.sched_setaffinity(0, {cpus[0]})
        with SandboxProcess("--app", f"bench:bench:{len(pool) * 4}/3600") as sandbox, \
                tempfile.TemporaryDirectory() as mine_cache, tempfile.TemporaryDirectory() as other_cache, \
                tempfile.TemporaryFile() as log:
            if args.layout == "pinned":
                os.sched_setaffinity(0, set(cpus[1:]))
            host, port = sandbox.url.split("//")[1].split(":")
            services = [start_service(sandbox.endpoint, mine_cache, log),
                        start_service(sandbox.endpoint, other_cache, log, repo=other)]
            try:
                targets = [Direct(host, int(port)), *(Service("127.0.0.1", p) for _, p in services)]
                sets = [pool[12 + k * n:12 + (k + 1) * n] for k in range(3)]
                timings: list[list[float]] = [[], [], []]
                group = Clients(args.clients)
                try:
                    for k, target in enumerate(targets):  # warm-up
                        group.timed(pool[4 * k:4 * k + 4], target)
                    for index, start in enumerate(range(0, n, turn)):
                        for k in ((0, 1, 2) if index % 2 == 0 else (0, 2, 1)):
                            timings[k] += group.timed(sets[k][start:start + turn], targets[k])
                finally:
                    group.close()
            finally:
                for process, _ in services:
                    process.terminate()
                    process.wait(timeout=30)
    finally:
        os.sched_setaffinity(0, everywhere)
    print(f"{args.layout}: {n} searches of each kind, {args.clients} client(s), turns of {turn}")
    print("| | p50 | p95 | added p50 (over direct) |")
    print("|---|---|---|---|")
    for name, values in zip(names, timings, strict=True):
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        added = "" if name == "direct" else f"{p50 - percentile(timings[0], 0.5):+.2f} ms"
        print(f"| {name} | {p50:.2f} ms | {p95:.1f} ms | {added} |")
    print(f"this code - the other, p50: {percentile(timings[1], 0.5) - percentile(timings[2], 0.5):+.2f} ms")


if __name__ == "__main__":
    main()
