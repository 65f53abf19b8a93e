"""Benchmark: a crawl that needs three quota windows, paced by IMAGESEARCH_QUOTA versus not paced at all.

Run: ``.venv/bin/python bench/bench_quota.py [--seeds 900] [--quota 300/10]``.

Starts a sandbox with ``--app test:test:<quota>`` for each crawl and runs the real
``scrapy crawl imagesearch`` (one result page per seed, so one call per seed):

- paced: ``-s IMAGESEARCH_QUOTA=<quota>`` (the pacer's sliding-window schedule);
- baseline: ``-s IMAGESEARCH_QUOTA=`` (no pacing: the crawl meets the quota and waits out the bans);
- margin<M>: paced again with ``-s IMAGESEARCH_QUOTA_MARGIN=<M>`` (``--margins``, default 1.0);
- unlimited (``--unlimited``): no quota at all, the crawl's own top speed on this machine, which
  bounds how fast a window's worth of calls can go out.

The crawl's span is measured from the sandbox's side: a thread polls ``/_sandbox/stats`` every
20 ms, and the span runs from the first poll that sees a call to the first poll that sees the
final count (so Python and Scrapy start-up, seed preparation before the first call and dataset
writing after the last are excluded; resolution +-20 ms). The subprocess's own wall time is
reported beside it. Two "ideals" are given for the accepted calls N at Q calls per W seconds:
the rate ideal N x W / Q (a steady stream at the quota's rate), and the window ideal
floor((N - 1) / Q) x W (a sliding window lets a full window go at once, then one per window).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.pacing.apps import Quota  # noqa: E402
from sandbox.testing import SandboxProcess  # noqa: E402
from tests.datasets import run_crawl, write_seed_photos  # noqa: E402

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.02


class CallSpan:
    """Polls a sandbox's call count in a thread; ``first``/``last`` are when calls started and stopped."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.url = sandbox.url + "/_sandbox/stats"
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            with urllib.request.urlopen(self.url, timeout=10) as response:
                total = json.load(response)["calls"]["total"]
            self.samples.append((time.monotonic(), total))
            time.sleep(POLL_SECONDS)  # not Event.wait: under libfaketime (make test-clock) it never returns

    def __enter__(self) -> CallSpan:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        final = self.samples[-1][1]
        first = next(t for t, total in self.samples if total > 0)
        last = next(t for t, total in self.samples if total == final)
        return last - first


@dataclass
class Result:
    label: str
    quota_setting: str
    returncode: int
    calls: int
    accepted: int
    quota_refused: int
    pacing_quota_errors: int
    pacing_waits: int
    span_seconds: float
    process_seconds: float
    seeds_ok: int


def crawl(label: str, photos: Path, quota: str, quota_setting: str, work: Path, *options: str) -> Result:
    with SandboxProcess("--app", f"test:test:{quota}") as sandbox:
        with CallSpan(sandbox) as span:
            run = run_crawl(str(photos), "-a", "pages=1", "-s", f"IMAGESEARCH_QUOTA={quota_setting}",
                            "-s", "DATASET_FORMATS=parquet", *options, dataset_dir=work / label,
                            endpoint=sandbox.endpoint, timeout=900)
            time.sleep(3 * POLL_SECONDS)
        stats = sandbox.stats()
    if run.returncode != 0:
        raise SystemExit(f"{label} crawl failed:\n{run.tail()}")
    crawl_stats = run.stats
    return Result(
        label=label,
        quota_setting=quota_setting or "(empty: no pacing)",
        returncode=run.returncode,
        calls=stats["calls"]["total"],
        accepted=stats["calls"]["total"] - stats["quota_refused"],
        quota_refused=stats["quota_refused"],
        pacing_quota_errors=crawl_stats.get("pacing/quota_errors", 0),
        pacing_waits=crawl_stats.get("pacing/waits", 0),
        span_seconds=span.seconds,
        process_seconds=run.seconds,
        seeds_ok=crawl_stats.get("imagesearch/seeds/ok", 0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=900, help="seed photos, one call each (default 900)")
    parser.add_argument("--quota", default="300/10", help="sandbox quota and IMAGESEARCH_QUOTA (default 300/10)")
    parser.add_argument("--margins", type=float, nargs="*", default=[1.0],
                        help="also run the paced crawl with these IMAGESEARCH_QUOTA_MARGIN values (default 1.0)")
    parser.add_argument("--unlimited", action="store_true",
                        help="also measure the crawl's own top speed against a sandbox without a quota")
    args = parser.parse_args()
    quota = Quota.parse(args.quota)

    with tempfile.TemporaryDirectory(prefix="bench_quota_") as tmp:
        work = Path(tmp)
        photos = work / "photos"
        write_seed_photos(photos, args.seeds)
        results = [
            crawl("paced", photos, args.quota, args.quota, work),
            crawl("baseline", photos, args.quota, "", work),
            *(crawl(f"margin{margin:g}", photos, args.quota, args.quota, work,
                    "-s", f"IMAGESEARCH_QUOTA_MARGIN={margin}") for margin in args.margins),
        ]
        if args.unlimited:
            results.append(crawl("unlimited", photos, "1000000/10", "", work))

    print(f"bench_quota: {args.seeds} seeds x 1 page, sandbox quota {quota.calls} calls / {quota.seconds:g} s, "
          f"CONCURRENT_REQUESTS 8 (default)")
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()})")
    header = (f"{'crawl':<10} {'IMAGESEARCH_QUOTA':<20} {'calls':>6} {'accepted':>8} {'refused':>7} "
              f"{'pacing/quota_errors':>19} {'span s':>7} {'process s':>9} {'rate ideal s':>12} "
              f"{'span/rate':>9} {'window ideal s':>14} {'span/window':>11} {'seeds ok':>8}")
    print(header)
    for r in results:
        rate_ideal = r.accepted * quota.seconds / quota.calls
        window_ideal = math.floor((r.accepted - 1) / quota.calls) * quota.seconds
        if r.label == "unlimited":
            rate_ideal = window_ideal = float("nan")
        print(f"{r.label:<10} {r.quota_setting:<20} {r.calls:>6} {r.accepted:>8} {r.quota_refused:>7} "
              f"{r.pacing_quota_errors:>19} {r.span_seconds:>7.2f} {r.process_seconds:>9.2f} {rate_ideal:>12.2f} "
              f"{r.span_seconds / rate_ideal:>9.3f} {window_ideal:>14.2f} "
              f"{r.span_seconds / window_ideal if window_ideal else math.nan:>11.3f} {r.seeds_ok:>8}")
    paced = results[0]
    verdict = (
        "met"
        if paced.quota_refused == 0 and paced.span_seconds <= 1.05 * paced.accepted * quota.seconds / quota.calls
        else "NOT met"
    )
    print(f"target (paced: span <= 1.05 x rate ideal, zero quota errors): {verdict}")


if __name__ == "__main__":
    main()
