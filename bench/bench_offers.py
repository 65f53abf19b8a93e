"""Benchmark: how well listings are grouped into offers by their pictures, what it costs, and what the
pictures cost a crawl.

    .venv/bin/python bench/bench_offers.py                # the figures of the README
    .venv/bin/python bench/bench_offers.py --seeds 10     # a quicker crawl comparison

1. **Grouping**, pairwise precision and recall (of the pairs of listings that are one product, how many
   the grouping puts together; of the pairs it puts together, how many are one product) on labelled sets:
   sandbox catalogues, each 2,450 products and 120 groups of an original and 1 to 7 resellers' takes on its
   picture (resized, recompressed, a text watermark, a border, a slight crop, a colour shift: one or two
   each), and a look-alike of each group (the same background and palette, two shapes recoloured and
   moved). Every picture is fingerprinted from the bytes the sandbox serves. The thresholds
   (IMAGESEARCH_OFFER_MAX_DISTANCE, IMAGESEARCH_OFFER_MAX_COLOUR) were chosen on the calibration set
   (catalogue seed 7, the grid below); the figures are reported on the built-in catalogue (another seed).
2. **Time and memory per 10,000 pictures**: fingerprinting (decode + pHash + colours) and grouping.
3. **A crawl with pictures and without**: ``--seeds`` photos of catalogue products, one page of 20 each,
   against the sandbox on loopback: calls, seconds and pictures fetched; then the same crawl again (the next
   day's refresh), which fetches none.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.pictures import MAX_COLOUR, MAX_DISTANCE, fingerprint, group  # noqa: E402
from sandbox.catalog import Catalog, builtin_catalog, jpeg_bytes  # noqa: E402
from sandbox.testing import SandboxProcess  # noqa: E402

KEY, SECRET = "bench-offers", "bench-offers-secret"
CALIBRATION_SEED = 7


def fingerprints(catalog: Catalog) -> tuple[list[str | None], list[str | None], list[Any], float]:
    """Each product's fingerprint from its picture as served, its label, and the seconds it took."""
    hashes: list[str | None] = []
    colours: list[str | None] = []
    labels: list[Any] = []
    pictures = [jpeg_bytes(p.image(), p.jpeg_quality) for p in catalog]
    started = time.perf_counter()
    for index, (product, data) in enumerate(zip(catalog, pictures, strict=True)):
        pic_hash, colour = fingerprint(data)
        hashes.append(pic_hash)
        colours.append(colour)
        labels.append(product.offer if product.offer is not None else -1 - index)
    return hashes, colours, labels, time.perf_counter() - started


def pairwise(groups: list[int], labels: list[Any]) -> tuple[float, float]:
    """Pairwise precision and recall of ``groups`` against ``labels``."""
    by_group: dict[int, list[int]] = {}
    for index, g in enumerate(groups):
        by_group.setdefault(g, []).append(index)
    by_label: dict[Any, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    predicted = sum(len(m) * (len(m) - 1) // 2 for m in by_group.values())
    true = sum(len(m) * (len(m) - 1) // 2 for m in by_label.values())
    hit = sum(1 for m in by_group.values() for a, b in itertools.combinations(m, 2) if labels[a] == labels[b])
    return hit / predicted if predicted else 1.0, hit / true if true else 1.0


def grouping_figures(calibrate: bool = True) -> None:
    print("## grouping (pairwise, every picture of the catalogue)")
    if calibrate:
        calibration_grid()
    catalog = builtin_catalog()
    hashes, colours, labels, seconds = fingerprints(catalog)
    precision, recall = pairwise(group(hashes, colours), labels)
    print(f"built-in catalogue ({len(labels)} pictures), defaults {MAX_DISTANCE} bits, colour {MAX_COLOUR:g}: "
          f"precision {precision:.3f}, recall {recall:.3f} (goals >= 0.98, >= 0.9: "
          f"{'met' if precision >= 0.98 and recall >= 0.9 else 'NOT met'})")
    print(f"fingerprinting: {seconds / len(labels) * 1000:.2f} ms a picture, "
          f"{seconds / len(labels) * 10_000:.1f} s per 10,000")


def calibration_grid() -> None:
    calibration = builtin_catalog(CALIBRATION_SEED)
    hashes, colours, labels, _ = fingerprints(calibration)
    print(f"calibration set (catalogue seed {CALIBRATION_SEED}, {len(labels)} pictures): "
          "precision / recall by max distance (bits) and max colour distance")
    print("| max distance | " + " | ".join(f"colour {c:g}" for c in (8, 10, 12, 14)) + " |")
    print("|---|" + "---|" * 4)
    for distance in (6, 8, 10, 12):
        cells = [pairwise(group(hashes, colours, distance, c), labels) for c in (8, 10, 12, 14)]
        print(f"| {distance} | " + " | ".join(f"{p:.3f} / {r:.3f}" for p, r in cells) + " |")


def scaling_figures() -> None:
    print("## grouping 10,000 pictures")
    rng = random.Random(1)
    catalogs = [builtin_catalog(seed) for seed in (11, 12, 13, 14)]
    hashes, colours = [], []
    for catalog in catalogs:
        h, c, _, _ = fingerprints(catalog)
        hashes += h
        colours += c
    order = rng.sample(range(len(hashes)), 10_000)
    hashes, colours = [hashes[i] for i in order], [colours[i] for i in order]
    tracemalloc.start()
    started = time.perf_counter()
    groups = group(hashes, colours)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"group(): {seconds:.2f} s, peak {peak / 2**20:.0f} MiB (Python allocations and numpy arrays), "
          f"{len(set(groups)):,} groups of 10,000 pictures")


def crawl(seeds: Path, sandbox: SandboxProcess, out: Path, *options: str) -> tuple[float, dict[str, Any]]:
    sandbox.reset()
    command = [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-a", f"seeds={seeds}", "-a", "pages=1",
               "-s", f"DATASET_DIR={out}", "-s", f"IMAGESEARCH_ENDPOINT={sandbox.endpoint}", "-s", "IMAGESEARCH_QUOTA=",
               "-s", "LOG_LEVEL=WARNING", "-s", "REPORT_ENABLED=False", *options]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    env.update(IMAGESEARCH_APP_KEY=KEY, IMAGESEARCH_APP_SECRET=SECRET)
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"the crawl exited {result.returncode}:\n{result.stderr[-3000:]}")
    return time.monotonic() - started, sandbox.stats()


def crawl_figures(count: int) -> None:
    print(f"## a crawl of {count} photos, one page of 20 each")
    catalog = builtin_catalog()
    originals = [i for i, p in enumerate(catalog.products) if p.offer is not None and i < 2450]
    with tempfile.TemporaryDirectory(prefix="bench-offers-") as tmp, \
            SandboxProcess("--app", f"{KEY}:{SECRET}:100000000/3600", "--daily-max", "100000000") as sandbox:
        root = Path(tmp)
        seeds = root / "seeds"
        seeds.mkdir()
        for index in random.Random(2026).sample(originals, count):
            picture = catalog.products[index].image().rotate(2, fillcolor=(240, 240, 240))
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=80)
            (seeds / f"photo-{index}.jpg").write_bytes(out.getvalue())
        print("| case | calls | seconds | pictures fetched |")
        print("|---|---|---|---|")
        for label, options in (("pictures off", ("-s", "IMAGESEARCH_PICTURES=False")), ("pictures on", ()),
                               ("pictures on, the next day", ())):
            out = root / ("off" if "off" in label else "on")
            seconds, stats = crawl(seeds, sandbox, out, *options)
            print(f"| {label} | {stats['calls']['total']} | {seconds:.1f} | {stats['pictures']['total']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=40, help="photos of the crawl comparison (default 40)")
    parser.add_argument("--quick", action="store_true",
                        help="the built-in catalogue's figures and the crawl only (no calibration grid, no 10,000)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    grouping_figures(calibrate=not args.quick)
    if not args.quick:
        scaling_figures()
    crawl_figures(args.seeds)


if __name__ == "__main__":
    main()
