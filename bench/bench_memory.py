"""Benchmark: peak RSS of a crawl of real-size photos, against seed count (it should not grow with it).

    .venv/bin/python bench/bench_memory.py                      # 200 and 2,000 photos
    .venv/bin/python bench/bench_memory.py --seeds 50,200       # quicker

Generates photos like a phone's or a shop's, cut to ``--side`` pixels (default 1024) and about
150-300 KB each as JPEG (catalogue products of the sandbox, upscaled, with sensor-like noise so
they compress like photos), then runs the real ``scrapy crawl imagesearch`` over the first N of
them for each N of ``--seeds``, against one sandbox on loopback. The crawl is paced
(``--quota``, default 60 calls a second) so that calls wait for their slot as they do at a real
key's 1000 calls an hour: what waits in the meantime is what memory holds. Each crawl's peak RSS
is its own (``os.wait4`` on its process); "crawl MB" is the peak sampled until the spider closes,
"commit MB" what the commit (DuckDB building the tables, its memory capped at 512 MB) adds on top.
The smallest N is the baseline: the report gives every other N's peak over it, and the target is
flat (<= 1.2x) from the smallest to the largest N.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox.testing import SandboxProcess  # noqa: E402

#: Flat: the largest crawl's peak RSS at most this many times the smallest's.
TARGET_RATIO = 1.2


def write_photos(directory: Path, count: int, side: int) -> list[int]:
    """``count`` distinct JPEG photos of ``side`` pixels, 150-300 KB each at 1024 px; their sizes in bytes."""
    import numpy as np
    from PIL import Image

    from sandbox.catalog import builtin_catalog

    catalog = builtin_catalog()
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    sizes = []
    for k in range(count):
        path = directory / f"photo-{k:05d}.jpg"
        if not path.exists():
            product = catalog.products[(11 * k) % len(catalog)]
            picture = product.image().convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            pixels = np.asarray(picture, dtype=np.int16)
            # Sensor-like noise, as much as it takes for the photo's size to land in its band.
            wanted = (150_000 + (k * 7919) % 150_000) * side * side // (1024 * 1024)
            amplitude, data = 2.0, b""
            for _ in range(8):
                noise = rng.integers(-int(amplitude), int(amplitude) + 1, size=pixels.shape, dtype=np.int16)
                buffer = io.BytesIO()
                Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=88)
                data = buffer.getvalue()
                if abs(len(data) - wanted) < wanted * 0.08:
                    break
                amplitude = max(1.0, amplitude * (wanted / len(data)) ** 1.5)
            path.write_bytes(data)
        sizes.append(path.stat().st_size)
    return sizes


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def crawl(seeds: Path, sandbox: SandboxProcess, work: Path, quota: str, pages: int) -> dict[str, float]:
    """One real crawl of the photos in ``seeds``: wall seconds, peak RSS (MB), and the peak before its commit.

    The peak is the process's own (``os.wait4``). While it runs, its RSS is sampled every 50 ms
    (Linux ``/proc``), and the samples until the log says the spider is closing give the peak of
    the crawl itself, before the commit builds the tables.
    """
    dataset_dir = work / "datasets"
    log_path = work / "crawl.log"
    command = [
        sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}", "-a", f"pages={pages}",
        "-s", f"DATASET_DIR={dataset_dir}", "-s", f"IMAGESEARCH_ENDPOINT={sandbox.endpoint}",
        "-s", f"IMAGESEARCH_QUOTA={quota}", "-s", "LOG_LEVEL=INFO",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    started = time.monotonic()
    crawl_peak = 0.0
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        closing = False
        while True:  # os.wait4, not Popen.poll: the rusage of the reaped process is what we measure
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if not closing:
                closing = b"Closing spider (" in log_path.read_bytes()[-20_000:]
                crawl_peak = max(crawl_peak, _rss_mb(process.pid) or 0.0)
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    code = process.returncode
    if code != 0:
        sys.exit(f"the crawl of {seeds} exited {code}:\n{log_path.read_text(errors='replace')[-3000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "crawl_peak_mb": crawl_peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="200,2000", help="seed counts, comma-separated (default 200,2000)")
    parser.add_argument("--side", type=int, default=1024, help="photo side in pixels (default 1024)")
    parser.add_argument("--quota", default="60/1", help="IMAGESEARCH_QUOTA of the crawls (default 60/1)")
    parser.add_argument("--pages", type=int, default=1, help="result pages per seed (default 1)")
    parser.add_argument("--photos", type=Path, help="keep the generated photos here (default: a temporary directory)")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.seeds.split(",")})

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        photos = args.photos or Path(tmp) / "photos"
        started = time.monotonic()
        sizes = write_photos(photos, counts[-1], args.side)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{platform.system()} {platform.release()}")
        print(f"photos: {len(sizes)} of {args.side} px, {min(sizes) / 1e3:.0f}-{max(sizes) / 1e3:.0f} KB "
              f"(mean {sum(sizes) / len(sizes) / 1e3:.0f} KB), made in {time.monotonic() - started:.1f} s")
        print(f"crawls: -a pages={args.pages} -s IMAGESEARCH_QUOTA={args.quota}, one sandbox on loopback")
        print(f"{'seeds':>6} {'seconds':>8} {'peak RSS MB':>12} {'vs ' + str(counts[0]):>8} "
              f"{'crawl MB':>9} {'commit MB':>10}")
        # Generous app quota at the sandbox: the crawl's own IMAGESEARCH_QUOTA paces it.
        with SandboxProcess("--app", "test:test:100000000/3600", "--daily-max", "100000000",
                            "--page-size", "20", "--max-results", str(20 * args.pages)) as sandbox:
            peaks: dict[int, float] = {}
            for count in counts:
                seeds = Path(tmp) / f"seeds-{count}"
                seeds.mkdir()
                for k in range(count):
                    (seeds / f"photo-{k:05d}.jpg").symlink_to(photos / f"photo-{k:05d}.jpg")
                work = Path(tmp) / f"run-{count}"
                work.mkdir()
                result = crawl(seeds, sandbox, work, args.quota, args.pages)
                peaks[count] = result["peak_rss_mb"]
                print(f"{count:>6} {result['seconds']:>8.1f} {result['peak_rss_mb']:>12.0f} "
                      f"{result['peak_rss_mb'] / peaks[counts[0]]:>7.2f}x {result['crawl_peak_mb']:>9.0f} "
                      f"{result['peak_rss_mb'] - result['crawl_peak_mb']:>+10.0f}")
    ratio = peaks[counts[-1]] / peaks[counts[0]]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"target peak RSS flat in seed count (<= {TARGET_RATIO}x from {counts[0]} to {counts[-1]} seeds): "
          f"{ratio:.2f}x, {verdict}")


if __name__ == "__main__":
    main()
