"""products_latest, the runs table and the README's history queries, over runs committed on different days.

The runs are staged as a crawl stages them (``StagedTable``, the hits and seeds schemas) and committed
by the crawl's own ``commit_staged``; a whole crawl's products_latest is checked in test_exporters.py.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from items.docs import duckdb_csv_columns
from items.schema import HITS, PRODUCTS_LATEST, STAGED_SEEDS
from pipeline.runs.commit import commit_staged, finish_interrupted_commits, write_commit_record
from pipeline.runs.identity import RunInfo, staging_dir
from pipeline.runs.latest import build_latest, snapshot_covers
from pipeline.runs.locks import snapshots_locked
from pipeline.runs.staging import StagedTable
from pipeline.runs.tables import build_tables

REPO = Path(__file__).resolve().parents[2]
DAY1 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
A, B, C = 652345678901, 652345678902, 652345678903
FORMATS = ["parquet", "csv"]


def stage(root: Path, run_id: str, started_at: datetime, prices: dict[int, str]) -> RunInfo:
    """Stage a run whose one seed found ``prices`` (num_iid: price), as a crawl stages it."""
    staging = staging_dir(root, run_id)
    hits = StagedTable(staging / "hits.parquet", HITS, 1000)
    for position, (num_iid, price) in enumerate(prices.items(), 1):
        hits.add({
            "run_id": run_id, "run_started_at": started_at, "seed_id": "photo-1", "seed_rank": 0,
            "num_iid": num_iid, "page": 1, "position": position, "title": f"item {num_iid}",
            "price_min": Decimal(price), "price_max": Decimal(price), "price_raw": price, "sales": 100 * position,
            "sales_kind": "paid", "sales_raw": f"{100 * position}人付款",
            "crawled_at": started_at + timedelta(minutes=position),
        })
    hits.close()
    seeds = StagedTable(staging / "seeds.parquet", STAGED_SEEDS, 1000)
    seeds.add({"run_id": run_id, "run_started_at": started_at, "seed_id": "photo-1", "status": "ok",
               "seed_rank": 0, "items_found": len(prices)})
    seeds.close()
    return RunInfo(run_id, started_at, started_at.date().isoformat())


def commit(root: Path, run_id: str, day: int, prices: dict[int, str], reason: str = "finished",
           formats: list[str] = FORMATS) -> dict[str, Any]:
    run = stage(root, run_id, DAY1 + timedelta(days=day), prices)
    stats = {"imagesearch/gateway": "top", "imagesearch/endpoint_host": "127.0.0.1", "imagesearch/calls": 3}
    return commit_staged(root, run, formats, 0, "zstd", reason, stats)


def latest(root: Path, fmt: str = "parquet") -> dict[int, dict[str, Any]]:
    if fmt == "parquet":
        rows = pq.read_table(root / "parquet" / "products_latest").to_pylist()
    else:
        rows = duckdb.connect().sql(f"SELECT * FROM read_csv('{root}/csv/products_latest/*.csv', header = true, "
                          f"columns = {duckdb_csv_columns(PRODUCTS_LATEST)})").arrow().read_all().to_pylist()
    return {row["num_iid"]: row for row in rows}


def seen(day: int, position: int) -> datetime:
    return DAY1 + timedelta(days=day, minutes=position)


def test_products_latest_holds_every_product_ever_seen_at_its_latest_run(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00", B: "20.00"})
    commit(tmp_path, "day2", 1, {A: "11.00", C: "30.00"})
    manifest = commit(tmp_path, "day3", 2, {C: "31.00", A: "12.00"})
    rows = latest(tmp_path)
    assert {n: (r["price_min"], r["run_id"], r["first_seen_at"], r["last_seen_at"], r["runs_seen"])
            for n, r in rows.items()} == {
        A: (Decimal("12.00"), "day3", seen(0, 1), seen(2, 2), 3),
        B: (Decimal("20.00"), "day1", seen(0, 2), seen(0, 2), 1),
        C: (Decimal("31.00"), "day3", seen(1, 2), seen(2, 1), 2),
    }
    assert latest(tmp_path, "csv") == rows  # the CSV copy is the same snapshot
    assert manifest["snapshots"]["products_latest"]["runs"] == 3
    assert snapshot_covers(tmp_path / "parquet/products_latest/products_latest.parquet") == ["day1", "day2", "day3"]
    # One file a format, replaced: nothing of the earlier snapshots is left beside it.
    assert sorted(p.name for p in (tmp_path / "parquet" / "products_latest").iterdir()) == ["products_latest.parquet"]
    assert pq.read_schema(tmp_path / "parquet/products_latest/products_latest.parquet").remove_metadata() == (
        PRODUCTS_LATEST.arrow_schema.remove_metadata()
    )


def test_a_run_committed_late_does_not_displace_a_later_observation(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"})
    commit(tmp_path, "day3", 2, {A: "12.00"})
    commit(tmp_path, "day2", 1, {A: "11.00", B: "20.00"})  # resumed, finished after day 3's run
    rows = latest(tmp_path)
    assert (rows[A]["price_min"], rows[A]["run_id"], rows[A]["runs_seen"]) == (Decimal("12.00"), "day3", 3)
    assert rows[A]["first_seen_at"] == seen(0, 1) and rows[B]["run_id"] == "day2"


def test_a_run_id_committed_again_replaces_its_observations(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"})
    commit(tmp_path, "day2", 1, {A: "11.00", C: "30.00"})
    commit(tmp_path, "day2", 1, {A: "11.50"})  # the same run id, run again: C is no longer in it
    rows = latest(tmp_path)
    assert set(rows) == {A}
    assert (rows[A]["price_min"], rows[A]["runs_seen"]) == (Decimal("11.50"), 2)


def test_a_snapshot_that_missed_a_finished_run_is_rebuilt_from_the_history(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"})
    stale = (tmp_path / "parquet/products_latest/products_latest.parquet").read_bytes()
    commit(tmp_path, "day2", 1, {B: "20.00"})
    (tmp_path / "parquet/products_latest/products_latest.parquet").write_bytes(stale)  # lost day2
    commit(tmp_path, "day3", 2, {A: "12.00"})
    rows = latest(tmp_path)
    assert set(rows) == {A, B} and rows[A]["runs_seen"] == 2 and rows[B]["run_id"] == "day2"


def test_an_interrupted_commit_finished_later_never_undoes_a_newer_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"})
    # day2's commit is recorded, then killed before it moved anything...
    run = stage(tmp_path, "day2", DAY1 + timedelta(days=1), {B: "20.00"})
    out = staging_dir(tmp_path, "day2") / "out"
    files = build_tables(staging_dir(tmp_path, "day2"), out, run, FORMATS, 0, "zstd")  # as a commit: tables first
    with snapshots_locked(tmp_path):
        snapshot = build_latest(tmp_path, staging_dir(tmp_path, "day2"), out, run, FORMATS, "zstd")
    manifest = {"run_id": "day2", "dt": run.dt, "complete": True, "files": files}
    write_commit_record(tmp_path, {"run_id": "day2", "manifest": manifest, "snapshots": [snapshot]})
    # ...while day3's crawl, already running, committed.
    commit(tmp_path, "day3", 2, {A: "12.00"})
    with caplog.at_level(logging.WARNING):
        assert finish_interrupted_commits(tmp_path) == ["day2"]
    assert "products_latest not replaced by run day2's" in caplog.text
    assert set(latest(tmp_path)) == {A}  # day3's snapshot stays; day2's would have lost its observation
    commit(tmp_path, "day4", 3, {C: "30.00"})  # the next commit sees day2 uncovered and rebuilds
    rows = latest(tmp_path)
    assert set(rows) == {A, B, C} and rows[A]["runs_seen"] == 2


def test_a_run_that_did_not_finish_is_not_in_products_latest(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"})
    manifest = commit(tmp_path, "day2", 1, {A: "99.00", B: "20.00"}, reason="shutdown")
    assert "snapshots" not in manifest
    assert {n: r["run_id"] for n, r in latest(tmp_path).items()} == {A: "day1"}


def test_with_csv_alone_products_latest_keeps_its_state_apart(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"}, formats=["csv"])
    commit(tmp_path, "day2", 1, {A: "11.00", B: "20.00"}, formats=["csv"])
    assert not (tmp_path / "parquet").exists()
    assert (tmp_path / "_state/parquet/products_latest/products_latest.parquet").is_file()
    rows = latest(tmp_path, "csv")
    assert (rows[A]["price_min"], rows[A]["runs_seen"], rows[B]["runs_seen"]) == (Decimal("11.00"), 2, 1)


def test_the_runs_table_has_one_row_per_run(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00", B: "20.00"})
    commit(tmp_path, "day2", 1, {A: "11.00"}, reason="shutdown")
    runs = duckdb.connect().sql(
        f"SELECT run_id, dt, started_at, complete, finish_reason, gateway, seeds, seeds_ok, calls, products, "
        f"matches FROM read_parquet('{tmp_path}/parquet/runs/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert runs == [("day1", DAY1.date(), DAY1, True, "finished", "top", 1, 1, 3, 2, 2)]
    # The run that stopped has its row too, with the rest of it, apart from the finished ones.
    (stopped,) = pq.read_table(tmp_path / "_incomplete/parquet/runs").to_pylist()
    assert (stopped["run_id"], stopped["complete"], stopped["finish_reason"]) == ("day2", False, "shutdown")


def _readme_block(language: str, marker: str) -> str:
    """The README's code block in ``language`` that contains ``marker``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_the_readmes_history_queries_give_a_products_price_over_runs(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00", B: "20.00"})
    commit(tmp_path, "nightly", 1, {B: "21.00", A: "11.00"})  # a custom id: runs sort by run_started_at
    commit(tmp_path, "a-backfill", 2, {A: "12.00"})

    def here(text: str) -> str:
        return text.replace("data/datasets", str(tmp_path)).replace("652345678901", str(A))

    expected = [(DAY1 + timedelta(days=d), Decimal(p)) for d, p in ((0, "10.00"), (1, "11.00"), (2, "12.00"))]
    sql = here(_readme_block("sql", "-- a product's history"))
    assert [(r[0], r[2]) for r in duckdb.connect().sql(sql).fetchall()] == expected
    namespace: dict[str, Any] = {}
    exec(here(_readme_block("python", "history = pd.read_parquet")), namespace)
    history = namespace["history"]
    assert list(zip(history["run_started_at"], history["price_min"], strict=True)) == expected
    exec(here(_readme_block("python", "history = (pl.scan_parquet")), namespace)
    frame: pl.DataFrame = namespace["history"]
    assert frame.select("run_started_at", "price_min").rows() == expected
    assert str(frame.schema["dt"]) == "Date"
    latest_sql = here(_readme_block("sql", "-- every product's latest"))
    assert {r[0]: r[-1] for r in duckdb.connect().sql(latest_sql).fetchall()} == {A: 3, B: 2}


def test_the_manifests_say_which_runs_products_latest_covers(tmp_path: Path) -> None:
    commit(tmp_path, "day1", 0, {A: "10.00"})
    manifest = commit(tmp_path, "day2", 1, {B: "20.00"})
    on_disk = json.loads((tmp_path / "_manifests" / "day2.json").read_text())
    assert on_disk["snapshots"] == manifest["snapshots"] == {
        "products_latest": {
            "rows": 2, "runs": 2,
            "paths": ["parquet/products_latest/products_latest.parquet", "csv/products_latest/products_latest.csv"],
        },
        "offers_latest": {  # no pictures: each product an offer of its own
            "rows": 2, "runs": 2,
            "paths": ["parquet/offers_latest/offers_latest.parquet", "csv/offers_latest/offers_latest.csv"],
        },
    }
    assert pd.read_parquet(tmp_path / "parquet" / "products_latest").shape[0] == 2
