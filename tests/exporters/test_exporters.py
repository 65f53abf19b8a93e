"""Writers, feed exporters, storage and layout, and a run's datasets: real files read back by DuckDB, pandas and
pyarrow, from real crawls."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq
import pytest
import scrapy
from datasets import load_dataset, published
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from exporters.itemexporters import CsvItemExporter, ParquetItemExporter, table_writer
from exporters.layout import (
    batch_file_name,
    contained,
    new_run_id,
    partition_dir,
    run_files,
    safe_component,
    safe_date,
)
from exporters.storage import AtomicFileFeedStorage, temp_path
from exporters.tables import TableConverter
from items import MATCHES, PRODUCTS, SEEDS, SNAPSHOTS, TABLES, ProductHit, SeedSummary
from items.docs import duckdb_csv_columns, pandas_read_csv_kwargs
from items.schema import HITS, Table
from pipeline.components.datasetrun import DatasetAddon, DatasetRun
from pipeline.normalize import normalize_num_iid
from pipeline.runs.identity import RunInfo, remember, resolve_run
from pipeline.runs.manifest import json_safe_stats

REPO = Path(__file__).resolve().parents[2]
CRAWLED_AT = datetime(2026, 11, 25, 10, 15, 0, 123456, tzinfo=UTC)
RUN_STARTED_AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
RUN = "20261125T101500Z-3fa2c1"
NO_GATEWAY = "https://gateway.invalid/router/rest"

# ---------------------------------------------------------------------------------------------
# The test-local spider for real crawls: `scrapy runspider tests/exporters/test_exporters.py`.
# ---------------------------------------------------------------------------------------------
#: Sales and prices as gateways send them; one hit in HITS_PER_SEED has no usable id.
SALES = ["1.2万+人付款", "338人付款", 777, "100+", "月销 3.5万", "", "30天销量 200"]
PRICES = ["39.50", 39.5, "200-600", "￥ 1,299.00", "", "面议"]


class TinySpider(scrapy.Spider):
    """Yields hand-made hits for 3 seeds (ids overlap between seeds) and their summaries, no network."""

    name = "tiny"
    hits_per_seed = 9

    async def start(self):  # type: ignore[no-untyped-def]
        self.crawler.stats.set_value("imagesearch/app_secret", "must-not-leak")
        for s, seed in enumerate(("seed-a", "seed-b", "seed-c")):
            for i in range(int(self.hits_per_seed)):
                n = s * 5 + i  # seeds share ids 5..8 and 10..13
                yield ProductHit(
                    title=f"<span class=H>商品</span> {n} &amp; co",
                    pic_url=f"//g-search3.alicdn.com/img/{n}.jpg",
                    price=PRICES[n % len(PRICES)],
                    sales=SALES[n % len(SALES)],
                    num_iid=str(1000 + n) if i != 4 else "not-an-id",
                    detail_url=f"//item.taobao.com/item.htm?id={1000 + n}",
                    seller_nick=f"shop{n % 3}",
                    is_tmall=["true", "false", True][n % 3],
                    seed_id=seed,
                    page=str(1 + i // 5),
                    position=i + 1,
                    seed_rank=s,
                    cat=50015374 if s == 1 else None,
                    crawled_at=CRAWLED_AT,
                )
            yield SeedSummary(
                seed_id=seed,
                seed_rank=s,
                source=f"seeds/{seed}.jpg",
                sha256="ab" * 32,
                status="ok",
                total_results=str(self.hits_per_seed),
                pages_fetched=2,
                items_found=self.hits_per_seed,
            )
        yield SeedSummary(
            seed_id="seed-x",
            seed_rank=3,
            source="seeds/x.gif",
            status="rejected",
            error_code=21,
            error_msg="image format not supported",
            pages_fetched=0,
            items_found=0,
        )


def crawl(
    tmp: Path, *settings: str, ok: bool = True, command: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a crawl with the project's settings (scrapy.cfg) in a fresh process: TinySpider unless *command*
    says otherwise."""
    # no calls: no sandbox
    # (TinySpider's listings' pictures are on hosts that do not exist: none is fetched)
    command = command or ("runspider", str(Path(__file__)), "-s", f"IMAGESEARCH_ENDPOINT={NO_GATEWAY}",
                          "-s", "IMAGESEARCH_PICTURES=False")
    args = [sys.executable, "-m", "scrapy", *command, "-s", f"DATASET_DIR={tmp / 'datasets'}", "-s", "LOG_LEVEL=DEBUG"]
    for s in settings:
        args += ["-s", s]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def manifests(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / "_manifests").glob("*.json"))]


def tree_files(root: Path) -> list[str]:
    """The files of the format trees (manifests, reports, run locks and staging aside)."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and not ({"_manifests", "_reports", "_locks", "_staging"} & set(p.relative_to(root).parts))
    )


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("crawl")
    return tmp / "datasets", crawl(tmp, "DATASET_BATCH_ITEMS=4", "PARQUET_ROW_GROUP_SIZE=3")


# ---------------------------------------------------------------------------------------------
# A real crawl through the project settings.
# ---------------------------------------------------------------------------------------------
def test_crawl_writes_every_table_in_both_format_trees(crawled: tuple[Path, Any]) -> None:
    root, _ = crawled
    (manifest,) = manifests(root)
    run_id, dt = manifest["run_id"], manifest["dt"]
    files = tree_files(root)
    latest = ["csv/products_latest/products_latest.csv", "parquet/products_latest/products_latest.parquet"]
    offers = ["csv/offers_latest/offers_latest.csv", "parquet/offers_latest/offers_latest.parquet"]
    assert manifest["snapshots"]["products_latest"] == {"rows": 16, "runs": 1, "paths": latest[::-1]}
    assert manifest["snapshots"]["offers_latest"] == {"rows": 16, "runs": 1, "paths": offers[::-1]}
    latest += offers
    assert files == sorted([f["path"] for f in manifest["files"]] + latest)
    for path in (f for f in files if f not in latest):
        fmt, table, partition, name = path.split("/")
        assert fmt in ("parquet", "csv") and table in TABLES and partition == f"dt={dt}"
        assert name.startswith(run_id + "-") and name.endswith("." + fmt)
    # 27 hits - 3 without an id = 24 matches; ids overlap so 16 products; 4 per file.
    # Without pictures, every product is an offer of its own.
    assert manifest["rows"]["parquet"] == manifest["rows"]["csv"] == {"products": 16, "matches": 24, "seeds": 4,
                                                                      "offers": 16, "runs": 1}
    assert sorted(
        f["path"].rsplit("/", 1)[1] for f in manifest["files"] if f["path"].startswith("parquet/matches/")
    ) == [
        batch_file_name(run_id, "parquet", n) for n in range(1, 7)
    ]
    assert manifest["finish_reason"] == "finished"
    assert manifest["stats"]["dataset/dropped/invalid_num_iid"] == 3
    assert (manifest["stats"]["dataset/staged/hits"], manifest["stats"]["dataset/staged/seeds"]) == (24, 4)
    assert not (root / "_staging").exists() or not any((root / "_staging").iterdir())
    assert not any("secret" in k or "sign" in k for k in manifest["stats"]), "secrets in the manifest"


def test_drops_are_not_logged_as_warnings(crawled: tuple[Path, Any]) -> None:
    _, result = crawled
    dropped = [line for line in result.stderr.splitlines() if "Dropped:" in line]
    assert len(dropped) == 3 and all("DEBUG" in line for line in dropped)


def test_duckdb_reads_the_parquet_tree_with_exact_types(crawled: tuple[Path, Any]) -> None:
    root, _ = crawled
    con = duckdb.connect()
    rel = con.sql(f"select * from read_parquet('{root}/parquet/products/**/*.parquet', hive_partitioning=true)")
    assert dict(zip(rel.columns, map(str, rel.types), strict=True)) == {
        "num_iid": "BIGINT",
        "title": "VARCHAR",
        "pic_url": "VARCHAR",
        "detail_url": "VARCHAR",
        "seller_nick": "VARCHAR",
        "is_tmall": "BOOLEAN",
        "price_min": "DECIMAL(14,2)",
        "price_max": "DECIMAL(14,2)",
        "price_raw": "VARCHAR",
        "coupon_price": "DECIMAL(14,2)",
        "promotion_price": "DECIMAL(14,2)",
        "sales": "BIGINT",
        "sales_kind": "VARCHAR",
        "sales_raw": "VARCHAR",
        "pic_hash": "VARCHAR",
        "pic_colour": "VARCHAR",
        "first_seed_id": "VARCHAR",
        "offer_id": "VARCHAR",
        "run_id": "VARCHAR",
        "run_started_at": "TIMESTAMP WITH TIME ZONE",
        "crawled_at": "TIMESTAMP WITH TIME ZONE",
        "dt": "DATE",
    }
    row = con.execute(
        f"select * from read_parquet('{root}/parquet/products/**/*.parquet', hive_partitioning=true)"
        " where num_iid = 1002"
    ).fetchone()
    assert row is not None
    as_dict = dict(zip(rel.columns, row, strict=True))
    assert as_dict["title"] == "商品 2 & co"
    assert (as_dict["price_min"], as_dict["price_max"], as_dict["price_raw"]) == (
        Decimal("200.00"), Decimal("600.00"), "200-600"
    )
    assert (as_dict["sales"], as_dict["sales_raw"]) == (777, "777")
    assert as_dict["pic_url"] == "https://g-search3.alicdn.com/img/2.jpg"
    assert con.execute(
        f"select count(*), count(distinct num_iid) from read_parquet('{root}/parquet/products/**/*.parquet')"
    ).fetchone() == (16, 16)
    assert con.execute(
        f"select count(*) from read_parquet('{root}/parquet/matches/**/*.parquet')"
        " where seed_id = 'seed-b' and cat = '50015374'"
    ).fetchone() == (8,)


def test_pyarrow_dataset_and_pandas_read_the_trees(crawled: tuple[Path, Any]) -> None:
    root, _ = crawled
    for table in TABLES.values():
        dataset = pa_ds.dataset(root / "parquet" / table.name, format="parquet", partitioning="hive")
        data = dataset.to_table()
        assert data.schema.names == [*table.column_names, "dt"]
        for column in table.columns:
            assert data.schema.field(column.name).type == column.type
        frame = pd.read_parquet(root / "parquet" / table.name)
        assert len(frame) == data.num_rows
    for f in (root / "parquet").rglob("*.parquet"):
        schema = pq.read_schema(f)
        table = TABLES.get(f.parts[-3]) or SNAPSHOTS[f.parts[-2]]
        assert schema.remove_metadata() == table.arrow_schema.remove_metadata()
        assert [schema.field(c.name).nullable for c in table.columns] == [c.nullable for c in table.columns]


def read_csv_tree(root: Path, table: str) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted((root / "csv" / table).rglob("*.csv"))]
    return pd.concat(frames, ignore_index=True)


def parquet_as_csv_text(root: Path, table: str) -> pd.DataFrame:
    """The Parquet tree rendered as the CSV spec says (the expected CSV)."""
    data = pa_ds.dataset(root / "parquet" / table, format="parquet").to_table()
    rows = []
    for record in data.to_pylist():
        rows.append({k: _csv_text(v) for k, v in record.items()})
    return pd.DataFrame(rows, columns=data.schema.names, dtype=str)


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def test_csv_tree_agrees_with_parquet_tree_row_for_row(crawled: tuple[Path, Any]) -> None:
    root, _ = crawled
    for table in TABLES:
        got = read_csv_tree(root, table)
        expected = parquet_as_csv_text(root, table)
        assert list(got.columns) == TABLES[table].column_names
        key = {"products": ["num_iid"], "matches": ["seed_id", "num_iid"], "seeds": ["seed_id"]}.get(table, ["run_id"])
        pd.testing.assert_frame_equal(
            got.sort_values(key, ignore_index=True), expected.sort_values(key, ignore_index=True)
        )


def test_bi_readers_read_the_csv_tree(crawled: tuple[Path, Any]) -> None:
    root, _ = crawled
    con = duckdb.connect()
    rel = con.sql(f"select * from read_csv_auto('{root}/csv/products/**/*.csv', hive_partitioning=true)")
    types = dict(zip(rel.columns, map(str, rel.types), strict=True))
    assert (
        types["num_iid"] == "BIGINT"
        and types["is_tmall"] == "BOOLEAN"
        and types["crawled_at"] == "TIMESTAMP WITH TIME ZONE"
    )
    assert con.execute(f"select count(*) from read_csv_auto('{root}/csv/products/**/*.csv')").fetchone() == (16,)
    # The typed reads docs/schema.md gives keep prices exact and every type right.
    typed = con.execute(
        f"select sum(price_min) from read_csv('{root}/csv/products/**/*.csv', header=true,"
        f" columns={duckdb_csv_columns(PRODUCTS)})"
    )
    assert typed.fetchone() == con.execute(
        f"select sum(price_min) from read_parquet('{root}/parquet/products/**/*.parquet')"
    ).fetchone()
    for table in TABLES.values():
        frames = [pd.read_csv(p, **pandas_read_csv_kwargs(table)) for p in (root / "csv" / table.name).rglob("*.csv")]  # type: ignore[arg-type]
        frame = pd.concat(frames, ignore_index=True)
        expected = pd.read_parquet(root / "parquet" / table.name).drop(columns="dt")
        assert len(frame) == len(expected)
        for column in table.columns:
            if not pa.types.is_decimal(column.type):
                # An empty string and a null are one empty cell to pandas: the Parquet tells them apart.
                missing = expected[column.name].isna() | expected[column.name].eq("")
                assert frame[column.name].isna().sum() == missing.sum(), column.name
    frame = pd.read_csv(next((root / "csv" / "seeds").rglob("*.csv")), parse_dates=[])
    assert set(frame["status"]) == {"ok", "rejected"}


def test_manifest_is_written_last(crawled: tuple[Path, Any]) -> None:
    root, result = crawled
    manifest_file = next((root / "_manifests").glob("*.json"))
    # The report is written from the committed datasets, after them: it is not part of the commit.
    data_mtimes = [p.stat().st_mtime_ns for p in root.rglob("*")
                   if p.is_file() and p != manifest_file and "_reports" not in p.parts]
    assert manifest_file.stat().st_mtime_ns >= max(data_mtimes)
    assert "finished: manifest" in result.stderr


def test_no_temp_files_left_and_none_visible_to_globs(crawled: tuple[Path, Any]) -> None:
    root, _ = crawled
    assert not list(root.rglob(".*"))


def test_two_runs_on_the_same_day_never_overwrite(tmp_path: Path) -> None:
    crawl(tmp_path)
    crawl(tmp_path)
    root = tmp_path / "datasets"
    first, second = manifests(root)
    assert first["run_id"] != second["run_id"] and first["dt"] == second["dt"]
    for m in (first, second):
        for f in m["files"]:
            assert (root / f["path"]).is_file()
    con = duckdb.connect()
    assert con.execute(
        f"select count(distinct run_id), count(*) from read_parquet('{root}/parquet/products/**/*.parquet')"
    ).fetchone() == (2, 32)


def test_a_reused_run_id_rewrites_its_run(tmp_path: Path) -> None:
    crawl(tmp_path, "DATASET_RUN_ID=nightly", "DATASET_BATCH_ITEMS=5")  # 5 matches files
    root = tmp_path / "datasets"
    (first,) = manifests(root)
    crawl(tmp_path, "DATASET_RUN_ID=nightly", "DATASET_BATCH_ITEMS=10")  # the same run again: 3 files
    (manifest,) = manifests(root)
    assert manifest["run_id"] == first["run_id"] == "nightly"
    names = sorted(f["path"].rsplit("/", 1)[1] for f in manifest["files"] if f["path"].startswith("parquet/matches/"))
    assert names == [batch_file_name(manifest["run_id"], "parquet", n) for n in range(1, 4)]
    assert manifest["rows"]["parquet"]["matches"] == 24  # not 48: the run was rewritten, not appended to
    assert tree_files(root) == published(manifest)  # the first attempt's extra files are gone


def test_a_run_id_run_again_on_another_day_keeps_its_dt(tmp_path: Path) -> None:
    crawl(tmp_path, "DATASET_RUN_ID=backfill", "DATASET_RUN_DATE=2026-11-20")  # committed under an earlier day
    crawl(tmp_path, "DATASET_RUN_ID=backfill")  # today, whatever day that is
    root = tmp_path / "datasets"
    (manifest,) = manifests(root)
    assert manifest["dt"] == "2026-11-20"
    assert {Path(f["path"]).parts[2] for f in manifest["files"]} == {"dt=2026-11-20"}
    assert tree_files(root) == published(manifest)  # nothing moved to another dt


def test_a_finished_run_frees_its_jobdir_for_the_next_run(tmp_path: Path) -> None:
    jobdir = tmp_path / "job"
    crawl(tmp_path, f"JOBDIR={jobdir}")
    crawl(tmp_path, f"JOBDIR={jobdir}")  # a scheduler re-running the same command the next day
    first, second = manifests(tmp_path / "datasets")
    assert first["run_id"] != second["run_id"]
    assert first["complete"] and second["complete"]
    assert not (tmp_path / "datasets" / "_staging").exists() or not any((tmp_path / "datasets" / "_staging").iterdir())


def test_the_real_spider_against_the_sandbox_fills_a_consistent_dataset(tmp_path: Path) -> None:
    seeds = sorted((REPO / "data" / "seeds").glob("*.jpg"))
    result = crawl(
        tmp_path, command=("crawl", "imagesearch", "-a", f"seeds={REPO / 'data' / 'seeds'}", "-a", "pages=2")
    )
    root = tmp_path / "datasets"
    (manifest,) = manifests(root)
    assert manifest["finish_reason"] == "finished"
    assert manifest["rows"]["parquet"] == manifest["rows"]["csv"]
    # The crawl ends by saying where the datasets went.
    rows, dt = manifest["rows"]["parquet"], manifest["dt"]
    assert result.stdout.splitlines() == [
        f"Datasets of run {manifest['run_id']} (complete) under {root}/:",
        *(f"  {table:<8} {rows[table]:>9,} rows  parquet/{table}/dt={dt}/  csv/{table}/dt={dt}/"
          + (f"  ({len(seeds)} ok, 0 rejected, 0 failed)" if table == "seeds" else "") for table in TABLES),
        f"  products_latest: {rows['products']:,} rows over 1 finished run  parquet/products_latest/  "
        "csv/products_latest/",
        f"  offers_latest: {rows['offers']:,} rows over 1 finished run  parquet/offers_latest/  csv/offers_latest/",
        f"  manifest: {root}/_manifests/{manifest['run_id']}.json",
        f"  report:   {root}/_reports/{manifest['run_id']}.html",
    ]
    con = duckdb.connect()

    def one(sql: str) -> Any:
        return con.execute(sql.replace("{p}", f"{root}/parquet")).fetchone()

    assert one("select count(*), count(distinct seed_id) from read_parquet('{p}/seeds/**/*.parquet')") == (
        len(seeds), len(seeds)
    )
    assert one("select count(*) = count(distinct num_iid) from read_parquet('{p}/products/**/*.parquet')") == (True,)
    # Every match points at a product, and each ok seed's hits are all there.
    assert one(
        "select count(*) from read_parquet('{p}/matches/**/*.parquet') m"
        " anti join read_parquet('{p}/products/**/*.parquet') p using (num_iid)"
    ) == (0,)
    assert one("select sum(items_found) from read_parquet('{p}/seeds/**/*.parquet')") == one(
        "select count(*) from read_parquet('{p}/matches/**/*.parquet')"
    )
    # The sandbox's loopback pictures stay http; everything typed.
    assert one(
        "select bool_and(pic_url like 'http://127.0.0.1:%') from read_parquet('{p}/products/**/*.parquet')"
    ) == (True,)
    assert one(
        "select count(*) from read_parquet('{p}/products/**/*.parquet') where crawled_at is null or run_id is null"
    ) == (0,)
    unparsed = one(
        "select count(*) from read_parquet('{p}/products/**/*.parquet')"
        " where price_min is null and coupon_price is null and trim(price_raw) != ''"
    )
    assert unparsed == (manifest["stats"].get("dataset/unparsed/price", 0),)


def test_user_feeds_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    args = [
        sys.executable, "-m", "scrapy", "runspider", str(Path(__file__)), "-O", str(out),
        "-s", f"DATASET_DIR={tmp_path / 'datasets'}",
    ]
    args += ["-s", f"IMAGESEARCH_ENDPOINT={NO_GATEWAY}"]
    result = subprocess.run(
        args, cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "datasets").exists()
    data = pq.read_table(out)  # without a table option: every hit, as the crawl yields them
    assert data.schema.remove_metadata() == HITS.arrow_schema.remove_metadata()
    assert data.num_rows == 24
    assert len(set(data.column("run_id").to_pylist())) == 1


# ---------------------------------------------------------------------------------------------
# Writers (the commit's) and feed exporters (-o/-O's) alone.
# ---------------------------------------------------------------------------------------------
def product(n: int, **fields: Any) -> dict[str, Any]:
    """A products row as the commit builds it (a dict: the writers take any mapping)."""
    row: dict[str, Any] = {
        "num_iid": n, "title": f"t{n}", "pic_url": "https://x/1.jpg", "detail_url": "https://x/2", "seller_nick": "s",
        "is_tmall": n % 2 == 0, "price_min": Decimal("39.50"), "price_max": Decimal("39.50"), "price_raw": "39.50",
        "sales": 12000, "sales_kind": "unknown", "sales_raw": "1.2万+", "first_seed_id": "seed", "run_id": RUN,
        "run_started_at": RUN_STARTED_AT, "crawled_at": CRAWLED_AT,
    }
    row.update(fields)
    return row


def hit(n: int, **fields: Any) -> ProductHit:
    """A hit as the pipelines leave it."""
    values = {k: v for k, v in product(n).items() if k != "first_seed_id"}
    item = ProductHit(**values, seed_id="seed", seed_rank=0, page=1, position=n, cat=None)
    item.update(fields)
    return item


def write(fmt: str, table: Table, rows: list[Any]) -> bytes:
    """``rows`` written as the commit writes a table: one batch, one writer."""
    buffer = io.BytesIO()
    writer = table_writer(fmt, buffer, table)
    converter = TableConverter(table)
    batch, _ = converter.to_batch([converter.row(row) for row in rows])
    writer.write(batch)
    writer.close()
    return buffer.getvalue()


def export(exporter_cls: type, items: list[Any], **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    exporter = exporter_cls(buffer, **kwargs)
    exporter.start_exporting()
    for item in items:
        exporter.export_item(item)
    exporter.finish_exporting()
    return buffer.getvalue()


def test_parquet_row_groups_of_a_feed_are_bounded_by_its_buffer() -> None:
    data = export(ParquetItemExporter, [hit(n) for n in range(1, 8)], table="hits", buffer_rows=3)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 3, 1]


def test_parquet_dictionary_encodes_only_the_columns_that_repeat() -> None:
    rows = [product(n, seller_nick=f"shop{n % 2}") for n in range(1, 50)]
    column_meta = pq.ParquetFile(io.BytesIO(write("parquet", PRODUCTS, rows))).metadata.row_group(0)
    encoded = {
        column_meta.column(i).path_in_schema
        for i in range(column_meta.num_columns)
        if column_meta.column(i).dictionary_page_offset
    }
    assert encoded == {"seller_nick", "price_raw", "sales_kind", "sales_raw", "first_seed_id", "run_id",
                       "run_started_at", "crawled_at"} == set(
        PRODUCTS.dictionary_columns
    )


def test_csv_times_are_iso_8601_whether_they_repeat_or_not() -> None:
    times = [datetime(2026, 11, 25, 10, 15, s, 123456 * (s % 2), tzinfo=UTC) for s in (1, 2, 1, 3)] + [None]
    text = write("csv", PRODUCTS, [product(n, crawled_at=t) for n, t in enumerate(times, 1)]).decode()
    assert [row[-1] for row in list(csv.reader(io.StringIO(text)))[1:]] == [
        "2026-11-25T10:15:01.123456Z", "2026-11-25T10:15:02.000000Z", "2026-11-25T10:15:01.123456Z",
        "2026-11-25T10:15:03.123456Z", ""]


def test_csv_text_follows_the_spec() -> None:
    rows = [
        product(1, crawled_at=datetime(2026, 11, 25, 10, 15, tzinfo=UTC)),
        product(2, title='a,"b"', price_min=None, sales=None, is_tmall=None, first_seed_id=""),
    ]
    text = write("csv", PRODUCTS, rows).decode("utf-8")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == PRODUCTS.column_names
    assert lines[1] == [
        "1", "t1", "https://x/1.jpg", "https://x/2", "s", "false", "39.50", "39.50", "39.50", "", "", "12000",
        "unknown", "1.2万+", "", "", "seed", "", RUN, "2026-11-25T10:00:00.000000Z", "2026-11-25T10:15:00.000000Z",
    ]
    sales = PRODUCTS.column_names.index("sales")
    assert lines[2][1] == 'a,"b"' and lines[2][5] == "" and lines[2][6] == "" and lines[2][sales] == ""
    assert not text.startswith("\ufeff")


def test_pandas_keeps_nullable_integers_and_booleans_with_the_readmes_option() -> None:
    rows = [product(1), product(2, sales=None, is_tmall=None)]
    data = write("parquet", PRODUCTS, rows)
    frame = pd.read_parquet(io.BytesIO(data), dtype_backend="pyarrow")  # as the README reads it
    assert str(frame["sales"].dtype) == "int64[pyarrow]" and str(frame["is_tmall"].dtype) == "bool[pyarrow]"
    assert frame["sales"].tolist()[0] == 12000 and pd.isna(frame["sales"].tolist()[1])
    assert str(frame["num_iid"].dtype) == "int64[pyarrow]"
    # Without it, one null turns sales into floats (12000.0) and is_tmall into objects.
    plain = pd.read_parquet(io.BytesIO(data))
    assert str(plain["sales"].dtype) == "float64" and str(plain["is_tmall"].dtype) == "object"


def test_an_empty_table_still_has_its_schema() -> None:
    assert (
        pq.read_table(io.BytesIO(export(ParquetItemExporter, [], table="seeds"))).schema.remove_metadata()
        == SEEDS.arrow_schema.remove_metadata()
    )
    assert export(CsvItemExporter, [], table="matches").decode().strip() == ",".join(
        f'"{c}"' for c in MATCHES.column_names
    )


def test_unnormalised_values_are_converted_to_the_column_types() -> None:
    raw = ProductHit(num_iid="652345678901", seed_id="seed", page="2", position=3.0, cat=50015374, run_id=RUN,
                     score="0.93", view="2")
    unscored = ProductHit(num_iid="5", seed_id="seed", page=1, position=1, run_id=RUN, score=float("nan"))
    data = pq.read_table(io.BytesIO(export(ParquetItemExporter, [raw, unscored], table="matches")))
    assert data.to_pylist() == [
        {"run_id": RUN, "run_started_at": None, "seed_id": "seed", "num_iid": 652345678901, "view": 2, "page": 2,
         "position": 3, "cat": "50015374", "score": 0.93, "fused_rank": None, "offer_id": None},
        {"run_id": RUN, "run_started_at": None, "seed_id": "seed", "num_iid": 5, "view": None, "page": 1,
         "position": 1, "cat": None, "score": None, "fused_rank": None, "offer_id": None},
    ]
    seeds = pq.read_table(io.BytesIO(export(
        ParquetItemExporter,
        [SeedSummary(seed_id="s", run_id=RUN, total_results="2,000", items_found="x")],
        table="seeds",
    )))
    assert (seeds.column("total_results")[0].as_py(), seeds.column("items_found")[0].as_py()) == (None, None)


def test_rows_missing_required_values_are_rejected_and_counted() -> None:
    crawler = get_crawler()
    crawler.stats.open_spider()  # type: ignore[call-arg]
    data = export(ParquetItemExporter, [hit(1), hit(2, run_id=None)], table="hits", stats=crawler.stats)
    assert pq.read_table(io.BytesIO(data)).column("num_iid").to_pylist() == [1]
    assert crawler.stats.get_value("dataset/export/rejected_rows/parquet/hits") == 1


def test_without_a_table_option_a_feed_writes_the_hits() -> None:
    items = [hit(1), SeedSummary(seed_id="s", run_id=RUN), hit(1, seed_id="other"), hit(3)]
    data = pq.read_table(io.BytesIO(export(ParquetItemExporter, items)))
    assert data.column("num_iid").to_pylist() == [1, 1, 3] and data.schema.names == HITS.column_names


@pytest.mark.parametrize(
    ("table", "message"), [("../products", "unknown table"), ("products", "built when a run commits")]
)
def test_a_table_a_feed_cannot_write_is_refused(table: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ParquetItemExporter(io.BytesIO(), table=table)


# ---------------------------------------------------------------------------------------------
# Storage and layout.
# ---------------------------------------------------------------------------------------------
def test_atomic_storage_hides_the_file_until_complete(tmp_path: Path) -> None:
    final = tmp_path / "parquet" / "products" / "dt=2026-11-25" / f"{RUN}-00001.parquet"
    storage = AtomicFileFeedStorage(str(final), feed_options={"overwrite": True})
    file = storage.open(None)  # type: ignore[arg-type]
    file.write(write("parquet", PRODUCTS, [product(1)]))
    assert not final.exists()
    tmp = temp_path(final)
    assert tmp.exists() and tmp.name.startswith(".") and not tmp.name.endswith(".parquet")
    # Readers' globs do not meet the half-written file (DuckDB's glob does match dotfiles ending .parquet).
    assert duckdb.execute(f"select count(*) from glob('{tmp_path}/parquet/**/*.parquet')").fetchone() == (0,)
    assert pa_ds.dataset(tmp_path / "parquet", format="parquet").files == []
    storage.store(file)
    assert final.exists() and not tmp.exists()
    assert pq.read_table(final).num_rows == 1


def test_appending_storage_appends_in_place(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"a\n")
    storage = AtomicFileFeedStorage(path.as_uri(), feed_options={"overwrite": False})
    file = storage.open(None)  # type: ignore[arg-type]
    file.write(b"b\n")
    storage.store(file)
    assert path.read_bytes() == b"a\nb\n"


@pytest.mark.parametrize(
    "bad",
    [
        "", ".", "..", "../x", "a/b", "a\\b", "/etc", "a\x00b", ".hidden", "_meta", "%(x)s", "c:x", "a..b", "x" * 200,
        "nightly\n",
    ],
)
def test_unsafe_path_components_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        safe_component(bad, "run id")


@pytest.mark.parametrize(
    "bad", ["../2026-11-25", "2026-11-25/..", "2026-13-01", "20261125", "", "2026-11-25\x00", "2026-11-25\n"]
)
def test_unsafe_dates_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        safe_date(bad)


def test_partition_paths_stay_inside_the_dataset_dir(tmp_path: Path) -> None:
    assert partition_dir(tmp_path, "csv", "seeds", "2026-11-25") == tmp_path / "csv" / "seeds" / "dt=2026-11-25"
    for fmt, table in (("..", "seeds"), ("csv", "../../x"), ("/abs", "seeds")):
        with pytest.raises(ValueError):
            partition_dir(tmp_path, fmt, table, "2026-11-25")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "csv").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        contained(tmp_path / "root", tmp_path / "root" / "csv" / "elsewhere")


def test_run_ids_are_sortable_and_unique() -> None:
    t = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    ids = {new_run_id(t) for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("20261125T101500Z-") for i in ids)
    assert new_run_id(datetime(2026, 11, 25, 10, 16, tzinfo=UTC)) > max(ids)


def test_jobdir_remembers_the_run(tmp_path: Path) -> None:
    settings = Settings({"JOBDIR": str(tmp_path / "job")})
    first = resolve_run(settings, now=datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    remember(tmp_path / "job", first)  # what the run does once it holds the JOBDIR
    again = resolve_run(settings, now=datetime(2026, 11, 26, 0, 5, tzinfo=UTC))
    assert again == first and first.dt == "2026-11-25"
    assert isinstance(again, RunInfo)
    assert resolve_run(Settings({"DATASET_RUN_ID": "nightly", "DATASET_RUN_DATE": "2026-01-02"})).run_id == "nightly"


def test_run_files_are_the_runs_finished_files_only(tmp_path: Path) -> None:
    mine = [partition_dir(tmp_path, fmt, "seeds", "2026-11-25") / batch_file_name(RUN, fmt, n)
            for fmt in ("csv", "parquet") for n in (1, 2)]
    # Another run, and runs whose ids start with this one's and a dash: not this run's files.
    others = [partition_dir(tmp_path, "csv", "seeds", "2026-11-25") / batch_file_name(other, "csv", 1)
              for other in ("other", f"{RUN}-2", f"{RUN}-00001")]
    temps = [temp_path(mine[0])]
    for path in mine + others + temps:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    assert run_files(tmp_path, RUN) == sorted(mine)


def test_the_addon_fixes_the_run_and_enables_it_with_or_without_user_feeds(tmp_path: Path) -> None:
    crawler = get_crawler(settings_dict={
        "ADDONS": {DatasetAddon: 0}, "DATASET_DIR": str(tmp_path), "DATASET_RUN_ID": RUN,
        "DATASET_RUN_DATE": "2026-11-25", "DATASET_FORMATS": ["csv"],
    })
    assert (crawler.settings["DATASET_RUN_ID"], crawler.settings["DATASET_RUN_DATE"]) == (RUN, "2026-11-25")
    assert crawler.settings.getdict("EXTENSIONS")[DatasetRun] == 500
    assert not crawler.settings.getdict("FEEDS")
    user = get_crawler(settings_dict={"ADDONS": {DatasetAddon: 0}, "FEEDS": {"out.csv": {"format": "csv"}}})
    assert list(user.settings.getdict("FEEDS")) == ["out.csv"]
    assert user.settings["DATASET_RUN_ID"] and user.settings.getdict("EXTENSIONS")[DatasetRun] == 500


def test_manifest_stats_are_json_safe_and_secret_free() -> None:
    stats = {
        "start_time": CRAWLED_AT, "imagesearch/app_secret": "x", "sign_method": "md5", "x/token": "t", "count": 3,
        "obj": object(),
    }
    safe = json_safe_stats(stats)
    assert set(safe) == {"start_time", "count", "obj"}
    assert safe["start_time"] == CRAWLED_AT.isoformat()
    json.dumps(safe)


def test_normalize_num_iid_is_what_the_exporter_falls_back_to() -> None:
    assert normalize_num_iid("652345678901") == 652345678901


def test_user_feeds_of_the_real_spider_write_the_hits_the_dataset_is_built_from(tmp_path: Path) -> None:
    """-O out.parquet / out.csv: every hit, its listing with it; the dataset's matches are the same pairs."""
    seeds = f"seeds={REPO / 'data' / 'seeds'}"
    crawl(tmp_path / "layout", command=("crawl", "imagesearch", "-a", seeds, "-a", "pages=2"))
    matches = load_dataset(tmp_path / "layout" / "datasets")["matches"]
    expected = sorted(zip(matches["seed_id"], matches["num_iid"], matches["position"], strict=True))
    out = tmp_path / "out"
    crawl(tmp_path, command=("crawl", "imagesearch", "-a", seeds, "-a", "pages=2",
                             "-O", f"{out}.parquet", "-O", f"{out}.csv"))
    from_parquet = pq.read_table(f"{out}.parquet").to_pandas()
    from_csv = pd.read_csv(f"{out}.csv", keep_default_na=False, na_values=[""])
    for got in (from_parquet, from_csv):
        assert list(got.columns) == HITS.column_names
        assert sorted(zip(got["seed_id"], got["num_iid"], got["position"], strict=True)) == expected
    assert not (tmp_path / "datasets").exists()
    # Each feed file has its manifest beside it: which run wrote it, its rows, and that the run finished.
    (run_id,) = from_parquet["run_id"].unique()
    for fmt, got in (("parquet", from_parquet), ("csv", from_csv)):
        manifest = json.loads(Path(f"{out}.{fmt}.manifest.json").read_text(encoding="utf-8"))
        assert manifest["path"] == f"{out}.{fmt}" and manifest["format"] == fmt and manifest["table"] == "hits"
        assert manifest["run_id"] == run_id and manifest["rows"] == len(got) > 0
        assert manifest["complete"] is True and manifest["finish_reason"] == "finished"
        assert manifest["appended"] is False and manifest["bytes"] == Path(f"{out}.{fmt}").stat().st_size
        assert manifest["calls"]["spent"] > 0 and manifest["gateway"] == "top"


def test_appending_with_dash_o(tmp_path: Path) -> None:
    """-o adds to a CSV file under its one header; a Parquet file cannot be appended to, and the crawl says so first."""
    out = tmp_path / "out"
    one_seed = (
        "crawl", "imagesearch",
        "-a", f"seeds={REPO / 'data' / 'seeds' / 'photo_544157462691_as-is.jpg'}", "-a", "pages=1",
    )
    crawl(tmp_path, command=(*one_seed, "-o", f"{out}.csv", "-o", f"{out}.parquet"))
    first = pd.read_csv(f"{out}.csv")
    assert json.loads(Path(f"{out}.csv.manifest.json").read_text(encoding="utf-8"))["appended"] is False  # new
    crawl(tmp_path, command=(*one_seed, "-o", f"{out}.csv"))
    both = pd.read_csv(f"{out}.csv")
    assert len(both) == 2 * len(first) and (both.columns == first.columns).all()
    assert both["run_id"].nunique() == 2  # the second header was not written as a row
    # The manifest says what this crawl added: its run, its rows, appended.
    manifest = json.loads(Path(f"{out}.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["appended"] is True and manifest["rows"] == len(first)
    assert manifest["run_id"] == both["run_id"].iloc[-1] != both["run_id"].iloc[0]
    parquet_manifest = Path(f"{out}.parquet.manifest.json").read_text(encoding="utf-8")
    refused = crawl(tmp_path, ok=False, command=(*one_seed, "-o", f"{out}.parquet"))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"scrapy crawl imagesearch: error: -o {out}.parquet: a Parquet file cannot be appended to;"
        " use -O to replace it, "
        "or a new file name (the parquet, csv dataset layout keeps every run apart by itself)"
    )
    assert pq.read_table(f"{out}.parquet").num_rows == len(first)
    assert Path(f"{out}.parquet.manifest.json").read_text(encoding="utf-8") == parquet_manifest  # refused: untouched
