"""Benchmark: signed taobao.image.search calls over loopback HTTP against a sandbox subprocess.

Run: ``.venv/bin/python bench/bench_sandbox.py [--requests 200]``.  Reports p50/p95/mean latency,
the in-process search time as a baseline, and the machine it ran on.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import logging
import os
import platform
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from sandbox.catalog import builtin_catalog
from sandbox.models import ImageSearchBackend
from sandbox.testing import SandboxProcess, signed_params

logger = logging.getLogger(__name__)


def query_jpeg(target_bytes: int = 30_000, variant: int = 0) -> bytes:
    """A ~30 KB JPEG photo-sized rendition of a catalogue product; each variant has different bytes."""
    img = builtin_catalog().products[1234 + variant % 7].image().resize((640, 640), Image.Resampling.BICUBIC)
    if variant:
        img.putpixel((variant % 640, variant // 640), (variant % 256, 0, 255 - variant % 256))
    best = b""
    for quality in range(95, 10, -5):
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=quality)
        best = buffer.getvalue()
        if len(best) <= target_bytes:
            break
    return best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--check", action="store_true", help="exit 1 when the p95 target is not met")
    args = parser.parse_args()

    jpeg = query_jpeg()
    image_data = base64.b64encode(jpeg).decode()
    print(f"machine: {platform.platform()} | python {platform.python_version()} | cpus {os.cpu_count()} | "
          f"{platform.processor() or platform.machine()}")
    print(f"query image: {len(jpeg)} bytes JPEG 640x640 ({len(image_data)} bytes Base64)")

    started = time.perf_counter()
    backend = ImageSearchBackend.from_catalog_path(None)
    print(f"in-process catalogue + index load: {(time.perf_counter() - started) * 1000:.0f} ms "
          f"({len(backend.catalog)} products)")
    # Baseline: the search function itself (decode + features + rank + page), without the query cache.
    samples = []
    for _ in range(args.requests):
        backend._query_features.clear()
        t0 = time.perf_counter()
        backend.search(image_data, None, 1)
        samples.append((time.perf_counter() - t0) * 1000)
    print(f"in-process search (n={args.requests}): p50 {percentile(samples, 0.5):.2f} ms  "
          f"p95 {percentile(samples, 0.95):.2f} ms  mean {statistics.mean(samples):.2f} ms")

    # Enough quota for the run: the default app allows 1000 calls an hour.
    with SandboxProcess("--app", f"bench:bench:{args.requests * 10 + 100}/3600") as sb:
        host, port = sb.url.split("//")[1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)

        def one_call(page: int, data: str = image_data) -> float:
            params = signed_params(
                "taobao.image.search", app_key="bench", secret="bench", image_data=data, page=str(page)
            )
            body = urllib.parse.urlencode(params)
            t0 = time.perf_counter()
            connection.request("POST", "/router/rest", body, {"Content-Type": "application/x-www-form-urlencoded"})
            answer = json.loads(connection.getresponse().read())
            elapsed = (time.perf_counter() - t0) * 1000
            assert "image_search_response" in answer, answer
            return elapsed

        for i in range(args.warmup):
            one_call(1 + i % 10)
        timings = [one_call(1 + i % 10) for i in range(args.requests)]
        # Every request a new image: no query-feature cache hit (decode + features each time).
        fresh = [base64.b64encode(query_jpeg(variant=i + 1)).decode() for i in range(args.requests)]
        fresh_timings = [one_call(1, data) for data in fresh]
        stats = sb.stats()
    for label, values in (("same image", timings), ("a new image each call", fresh_timings)):
        print(f"HTTP search over loopback, keep-alive, {label} (n={len(values)}): "
              f"p50 {percentile(values, 0.5):.2f} ms  "
              f"p95 {percentile(values, 0.95):.2f} ms  mean {statistics.mean(values):.2f} ms  max {max(values):.2f} ms")
    timings = timings + fresh_timings
    print(f"sandbox saw {stats['calls']['total']} calls")
    # The requirement: well under 50 ms once warm. Said, not asserted (this machine may be loaded): --check
    # makes a miss exit 1.
    met = percentile(timings, 0.95) < 50
    print(f"target p95 under 50 ms: {'met' if met else 'NOT met'}")
    if args.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
