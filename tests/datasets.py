"""Test helpers for whole crawls: run ``scrapy crawl imagesearch`` into a dataset tree, read it back, compare two.

Import it from a test module in ``tests/`` with ``from datasets import load_dataset, assert_same_datasets``:
pytest's default ``prepend`` import mode puts a rootless test file's own directory first on
``sys.path``, so this module is found next to the tests (there is no ``tests/__init__.py``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as ds
import pytest

logger = logging.getLogger(__name__)

#: Columns that differ between two runs of the same crawl by construction: the run's id, its
#: date partition, and when each page arrived.
RUN_COLUMNS: tuple[str, ...] = ("run_id", "run_started_at", "crawled_at", "dt")

#: The key each table is sorted by (and rows matched on) when two datasets are compared.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "products": ("num_iid",),
    "matches": ("seed_id", "num_iid", "page", "position"),
    "seeds": ("seed_id",),
    "offers": ("offer_id",),
}



def load_dataset(dataset_dir: str | Path, run_id: str | None = None) -> dict[str, pd.DataFrame]:
    """``{table: DataFrame}`` of ``dataset_dir/parquet/<table>/dt=.../*.parquet`` (hive partitioning), for
    products, matches, seeds and offers.

    The run-time columns (RUN_COLUMNS) are dropped, after keeping only ``run_id``'s rows when one
    is given. Files still being written (dot-prefixed) are skipped by pyarrow's default ignore list.
    """
    root = Path(dataset_dir) / "parquet"
    if not root.is_dir():
        raise AssertionError(f"no Parquet dataset under {dataset_dir} (expected {root}/<table>/dt=.../*.parquet)")
    tables: dict[str, pd.DataFrame] = {}
    # The tables a crawl's answers decide; runs (its calls, its times) and products_latest (all runs) aside.
    for table_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in TABLE_KEYS):
        dataset = ds.dataset(table_dir, format="parquet", partitioning="hive")
        arrow = dataset.to_table(filter=(ds.field("run_id") == run_id) if run_id else None)
        frame = arrow.to_pandas()
        tables[table_dir.name] = frame.drop(columns=[c for c in RUN_COLUMNS if c in frame.columns])
    return tables


def published(manifest: Mapping[str, Any]) -> list[str]:
    """Every file a commit leaves in the trees: its run's files, and the snapshots (products_latest) it replaced."""
    snapshots = [path for s in manifest.get("snapshots", {}).values() for path in s["paths"]]
    return sorted([f["path"] for f in manifest["files"]] + snapshots)


def _sorted(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    columns = list(keys) + sorted(c for c in frame.columns if c not in keys)
    return frame[columns].sort_values(list(keys), kind="mergesort").reset_index(drop=True)


def _table_diff(name: str, a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str], limit: int = 10) -> list[str]:
    """Human-readable differences between two versions of one table (empty when they are equal)."""
    problems: list[str] = []
    if set(a.columns) != set(b.columns):
        problems.append(
            f"{name}: columns differ: only in A {sorted(set(a.columns) - set(b.columns))}, "
            f"only in B {sorted(set(b.columns) - set(a.columns))}"
        )
        return problems
    for label, frame in (("A", a), ("B", b)):
        duplicated = frame[frame.duplicated(list(keys), keep=False)]
        if len(duplicated):
            problems.append(f"{name}: {len(duplicated)} rows of {label} share a key {list(keys)}:\n"
                            f"{duplicated.head(limit).to_string()}")
    a, b = _sorted(a, keys), _sorted(b, keys)
    merged = a.merge(b, on=list(keys), how="outer", suffixes=("__a", "__b"), indicator=True)
    only_a = merged[merged["_merge"] == "left_only"]
    only_b = merged[merged["_merge"] == "right_only"]
    for label, rows in (("A", only_a), ("B", only_b)):
        if len(rows):
            problems.append(f"{name}: {len(rows)} rows only in {label}, e.g.:\n"
                            f"{rows[list(keys)].head(limit).to_string(index=False)}")
    both = merged[merged["_merge"] == "both"]
    for column in sorted(c for c in a.columns if c not in keys):
        left, right = both[f"{column}__a"], both[f"{column}__b"]
        differs = ~((left == right) | (left.isna() & right.isna()))
        if differs.any():
            shown = both.loc[differs, [*keys, f"{column}__a", f"{column}__b"]].head(limit)
            problems.append(f"{name}.{column}: {int(differs.sum())} rows differ, e.g.:\n{shown.to_string(index=False)}")
    return problems


def _check_first_seeds(name: str, products: pd.DataFrame, matches: pd.DataFrame | None) -> list[str]:
    """Each product's ``first_seed_id`` must be a seed whose search returned that product."""
    if matches is None or "first_seed_id" not in products.columns:
        return []
    pairs = set(zip(matches["seed_id"], matches["num_iid"], strict=True))
    wrong = products[[(s, n) not in pairs for s, n in zip(products["first_seed_id"], products["num_iid"], strict=True)]]
    if len(wrong):
        return [f"{name}: {len(wrong)} products name a first_seed_id that never matched them:\n"
                f"{wrong[['num_iid', 'first_seed_id']].head(10).to_string(index=False)}"]
    return []


def diff_datasets(
    a: Mapping[str, pd.DataFrame], b: Mapping[str, pd.DataFrame],
    tables: Iterable[str] = ("products", "matches", "seeds"),
) -> list[str]:
    """Every difference between two loaded datasets, as readable paragraphs (empty when the same)."""
    problems: list[str] = []
    for name in tables:
        if name not in a or name not in b:
            problems.append(f"{name}: table missing from {'A' if name not in a else 'B'} "
                            f"(A has {sorted(a)}, B has {sorted(b)})")
            continue
        for label, loaded in (("A", a), ("B", b)):
            if name == "products":
                problems += _check_first_seeds(f"products of {label}", loaded[name], loaded.get("matches"))
        # first_seed_id is compared too: the first seed in the order given wins, whatever order answers arrive in.
        left, right = a[name], b[name]
        if len(left) != len(right):
            problems.append(f"{name}: {len(left)} rows in A, {len(right)} in B")
        problems += _table_diff(name, left, right, TABLE_KEYS[name])
    return problems


def assert_same_datasets(dir_a: str | Path, dir_b: str | Path) -> None:
    """The products, matches and seeds of two dataset trees hold the same rows (run-time columns aside)."""
    problems = diff_datasets(load_dataset(dir_a), load_dataset(dir_b))
    if problems:
        raise AssertionError(f"datasets differ (A = {dir_a}, B = {dir_b}):\n\n" + "\n\n".join(problems))


# -- running crawls for these comparisons ----------------------------------------------------------

#: The repository root: ``scrapy crawl`` runs from here so it finds scrapy.cfg and the project.
REPO = Path(__file__).resolve().parent.parent


@dataclass
class CrawlRun:
    """What one ``scrapy crawl imagesearch`` subprocess did, and where its datasets went."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    dataset_dir: Path

    def manifest(self) -> dict[str, Any]:
        """The run's manifest (``DATASET_DIR/_manifests/<run_id>.json``); there must be exactly one."""
        manifests = sorted((self.dataset_dir / "_manifests").glob("*.json"))
        assert len(manifests) == 1, f"expected one run manifest in {self.dataset_dir}, found {manifests}\n{self.tail()}"
        manifest: dict[str, Any] = json.loads(manifests[0].read_text(encoding="utf-8"))
        return manifest

    @property
    def stats(self) -> dict[str, Any]:
        """The crawl's stats as its manifest recorded them."""
        stats: dict[str, Any] = self.manifest()["stats"]
        return stats

    def tail(self, chars: int = 4000) -> str:
        return f"$ {' '.join(self.command)}\nexit {self.returncode}\n{self.stderr[-chars:]}"


def run_crawl(
    seeds: str | None, *options: str, dataset_dir: str | Path, endpoint: str | None = None,
    env: Mapping[str, str] | None = None, timeout: float = 300, pictures: bool = False,
) -> CrawlRun:
    """``python -m scrapy crawl imagesearch -a seeds=SEEDS -s DATASET_DIR=... [options]`` from the repo root.

    ``seeds=None`` leaves the ``-a seeds`` argument out altogether. The listings' pictures are fetched only
    with ``pictures=True`` (or an IMAGESEARCH_PICTURES option): the tests of pictures and offers ask for
    them; elsewhere they would double a crawl's time, and the sandbox, which serves the pictures on the
    reactor that answers the calls (the real CDN is not the API's host), would answer calls later than
    their pace. A test that runs its own command says the same where it compares with these crawls.

    IMAGESEARCH_* variables of the calling environment are dropped so a developer's own
    credentials never reach a test; ``env`` adds variables back.
    """
    command = [sys.executable, "-m", "scrapy", "crawl", "imagesearch", "-s", f"DATASET_DIR={dataset_dir}"]
    if seeds is not None:
        command += ["-a", f"seeds={seeds}"]
    if endpoint:
        command += ["-s", f"IMAGESEARCH_ENDPOINT={endpoint}"]
    command += list(options)
    if not pictures and not any(option.startswith("IMAGESEARCH_PICTURES=") for option in options):
        command += ["-s", "IMAGESEARCH_PICTURES=False"]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    run_env.update(env or {})
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=timeout)
    return CrawlRun(
        command, result.returncode, result.stdout, result.stderr, time.monotonic() - started, Path(dataset_dir)
    )


def stop_when(
    command: list[str], ready: Callable[[], bool], log: Path,
    stop: signal.Signals = signal.SIGKILL, timeout: float = 120,
) -> int:
    """Start the crawl, send it ``stop`` as soon as ``ready()`` holds (polled every 2 ms); its exit status.

    The crawl logs to a file, not a pipe: nobody reads a pipe while we poll, and a crawl that logs
    a line per batch file would fill it and block.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESEARCH_")}
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the crawl ended (exit {process.returncode}) before the stop point was reached:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"stop point not reached in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.002)
        process.send_signal(stop)
        return process.wait(timeout=timeout)
    finally:
        process.kill()  # a no-op if it already ended
        process.wait()


def write_seed_photos(directory: str | Path, count: int, size: int = 128, first: int = 0) -> list[Path]:
    """``count`` distinct small JPEG "photos" of built-in catalogue products, each slightly cropped.

    Products are taken ``first``, ``first + 11``, ... modulo the catalogue size (11 is prime to
    the built-in catalogue's 2450 products, so up to 2450 photos are distinct). ``size`` pixels
    square keeps the base64 bodies of the calls small.
    """
    from PIL import Image

    from sandbox.catalog import builtin_catalog

    catalog = builtin_catalog()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(count):
        index = (first + 11 * k) % len(catalog)
        product = catalog.products[index]
        img = product.image().convert("RGB")
        w, h = img.size
        img = img.crop((w * 3 // 100, h * 2 // 100, w * 97 // 100, h * 96 // 100))
        img = img.resize((size, size), Image.Resampling.BICUBIC)
        path = directory / f"photo-{index:04d}.jpg"
        img.save(path, "JPEG", quality=80)
        written.append(path)
    assert len(set(written)) == count, f"only {len(set(written))} distinct photos for {count} seeds"
    return written


def free_port() -> int:
    """A loopback TCP port free just now (for sandboxes that must come back on the same one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photos_fixture(count: int) -> Any:
    """A module-scoped ``photos`` fixture: a directory of ``count`` seed photos (``write_seed_photos``)."""

    @pytest.fixture(scope="module")
    def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
        directory = tmp_path_factory.mktemp("photos")
        write_seed_photos(directory, count)
        return directory

    return photos

