"""Every reader the README names reads the trees to the same rows, CSV with the options docs/schema.md gives.

The trees are committed by the crawl's own code (``commit_staged``) from staged rows with hostile text
(quotes, backslashes, newlines, cells that would start a formula) and empty texts beside nulls in every
string column, over an empty run (header-only CSV files, the first in every glob) and two more; then
DuckDB, pandas, pyarrow and polars read them. DuckDB, pyarrow and polars give back ``""`` apart from null,
as Parquet does; ``pandas.read_csv`` cannot, and says so in docs/schema.md.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow
import pyarrow as pa
import pyarrow.csv
import pyarrow.dataset as ds
import pytest

from exporters.itemexporters import CsvTableWriter
from exporters.tables import TableConverter
from items.docs import duckdb_read_csv, pandas_read_csv_kwargs, polars_read_csv, pyarrow_read_csv
from items.schema import HITS, PRODUCTS, SNAPSHOTS, STAGED_SEEDS, TABLES, Table
from pipeline.runs.commit import commit_staged
from pipeline.runs.identity import RunInfo, staging_dir
from pipeline.runs.staging import StagedTable

DAY = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
HOSTILE: list[str | None] = [
    'a,"b"', 'back\\slash \\" and \\\\', "line one\nline two", "crlf\r\nend", "=1+2", "+33 1 23", "-2", "@SUM(A1)",
    "\ttab first", '"', "  ", "中文 标题 ￥39.9起", "emoji 😀", "'quoted already", "", None,
]


def text(n: int, value: str) -> str | None:
    """Every third row's text empty, the next row's null: ``""`` beside null in every string column."""
    return "" if n % 3 == 0 else None if n % 3 == 1 else value


def stage(root: Path, run_id: str, day: int, titles: list[str | None]) -> RunInfo:
    started = DAY + timedelta(days=day)
    staging = staging_dir(root, run_id)
    hits = StagedTable(staging / "hits.parquet", HITS, 1000)
    for n, title in enumerate(titles, 1):
        hits.add({
            "run_id": run_id, "run_started_at": started, "seed_id": "photo-1", "seed_rank": 0,
            "num_iid": 652345678900 + n, "page": 1, "position": n, "cat": "50015374" if n % 2 else None,
            "title": title, "seller_nick": text(n + 1, (title or "")[:3]), "is_tmall": bool(n % 2) if n % 3 else None,
            "pic_url": text(n + 2, f"https://img.example/{n}.jpg"), "detail_url": text(n, f"https://item.example/{n}"),
            "price_min": Decimal("39.90") if n % 4 else None, "price_max": Decimal("1039.99"),
            "price_raw": text(n, "39.9起"), "sales": 12000 if n % 5 else None, "sales_kind": "paid",
            "sales_raw": text(n + 1, "1.2万+人付款"),
            # the listings' pictures: near-duplicates two by two (one offer each pair), "" and null beside them
            "pic_hash": text(n + 2, f"{(n // 2) * 0x9E3779B97F4A7C15 % 2**64:016x}"),
            "pic_colour": text(n + 2, "80" * 48),
            "crawled_at": started + timedelta(seconds=n, microseconds=123456 * (n % 2)),
        })
    hits.close()
    seeds = StagedTable(staging / "seeds.parquet", STAGED_SEEDS, 1000)
    status = "ok" if titles else "rejected"
    seeds.add({"run_id": run_id, "run_started_at": started, "seed_id": "photo-1", "source": "photos/1.jpg",
               "status": status, "error_code": None if titles else "image_unreadable", "seed_rank": 0,
               "error_msg": "" if titles else "cannot identify image file", "items_found": len(titles)})
    seeds.close()
    return RunInfo(run_id, started, started.date().isoformat())


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trees")
    for run_id, day, titles in (("r0-empty", 0, []), ("r1-hostile", 1, HOSTILE), ("r2", 2, ["plain", "=x"])):
        commit_staged(root, stage(root, run_id, day, titles), ["parquet", "csv"], 0, "zstd", "finished",
                      {"imagesearch/gateway": "top"})
    return root


def canonical(value: Any, csv_text: bool = False) -> Any:
    """One value as every reader should give it; ``csv_text``: "" as null, as ``pandas.read_csv`` gives it."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and csv_text and value == "":
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def rows(records: list[dict[str, Any]], columns: list[str], csv_text: bool = False) -> list[tuple[Any, ...]]:
    out = [tuple(canonical(r[c], csv_text) for c in columns) for r in records]
    return sorted(out, key=repr)


TREES = [*TABLES.values(), *SNAPSHOTS.values()]


def partitioned(table: Table) -> bool:
    return table.name in TABLES


def truth(root: Path, table: Table) -> list[dict[str, Any]]:
    """The Parquet tree as pyarrow's dataset reads it (dt a string from the directory names)."""
    dataset = ds.dataset(root / "parquet" / table.name, format="parquet",
                         partitioning="hive" if partitioned(table) else None)
    return dataset.to_table().to_pylist()


@pytest.mark.parametrize("table", TREES, ids=lambda t: t.name)
def test_duckdb_reads_both_trees_to_the_same_rows(trees: Path, table: Table) -> None:
    columns = table.column_names + (["dt"] if partitioned(table) else [])
    expected = truth(trees, table)
    glob = "**/*" if partitioned(table) else "*"
    hive = ", hive_partitioning = true" if partitioned(table) else ""
    parquet = duckdb.connect().sql(f"SELECT * FROM read_parquet('{trees}/parquet/{table.name}/{glob}.parquet'{hive})")
    assert rows(parquet.arrow().read_all().to_pylist(), columns) == rows(expected, columns)
    reader = duckdb_read_csv(table, f"{trees}/csv/{table.name}/{glob}.csv", partitioned(table))
    from_csv = duckdb.connect().sql(f"SELECT * FROM {reader}").arrow().read_all().to_pylist()
    assert rows(from_csv, columns) == rows(expected, columns)


@pytest.mark.parametrize("table", TREES, ids=lambda t: t.name)
def test_pandas_reads_both_trees_to_the_same_rows(trees: Path, table: Table) -> None:
    expected = truth(trees, table)
    frame = pd.read_parquet(trees / "parquet" / table.name, dtype_backend="pyarrow")
    columns = table.column_names
    assert rows(frame.to_dict("records"), columns) == rows(expected, columns)
    files = sorted((trees / "csv" / table.name).rglob("*.csv"))
    frames = [pd.read_csv(f, **pandas_read_csv_kwargs(table)) for f in files]  # type: ignore[call-overload]
    from_csv = pd.concat(frames, ignore_index=True).to_dict("records")
    # pandas has no decimal dtype: prices come as text, exactly as written ("39.90"); "" comes as null.
    assert rows(from_csv, columns) == rows(expected, columns, csv_text=True)
    # Through pyarrow's reader, as docs/schema.md shows, pandas keeps "" and the exact types.
    arrow_frames = [eval(pyarrow_read_csv(table, str(f)), {"pa": pa, "pyarrow": pyarrow}).to_pandas(
        types_mapper=pd.ArrowDtype) for f in files]
    exact = pd.concat(arrow_frames, ignore_index=True)
    assert rows(exact.to_dict("records"), columns) == rows(expected, columns)
    assert list(exact.dtypes) == list(frame[columns].dtypes), "the Parquet tree's dtypes"


@pytest.mark.parametrize("table", TREES, ids=lambda t: t.name)
def test_polars_reads_both_trees_to_the_same_rows(trees: Path, table: Table) -> None:
    columns = table.column_names + (["dt"] if partitioned(table) else [])
    expected = truth(trees, table)
    glob = "**/*" if partitioned(table) else "*"
    parquet = pl.scan_parquet(f"{trees}/parquet/{table.name}/{glob}.parquet",
                              hive_partitioning=partitioned(table)).collect()
    assert rows(parquet.to_dicts(), columns) == rows(expected, columns)
    source = polars_read_csv(table, f"{trees}/csv/{table.name}/{glob}.csv", partitioned(table))
    from_csv: pl.DataFrame = eval(source, {"pl": pl})  # the very text docs/schema.md shows
    assert from_csv.schema == parquet.schema
    assert rows(from_csv.to_dicts(), columns) == rows(expected, columns)


def test_empty_texts_stand_beside_nulls_in_every_string_column_of_the_trees(trees: Path) -> None:
    """The test data itself: each string column of products holds "" and null: the readers are tried on both."""
    products = truth(trees, PRODUCTS)
    for column in ("title", "pic_url", "detail_url", "seller_nick", "price_raw", "sales_raw", "pic_hash"):
        values = [r[column] for r in products]
        assert "" in values and None in values, column
    assert "" in [r["error_msg"] for r in truth(trees, TABLES["seeds"])]
    csv_text = next((trees / "csv" / "products" / "dt=2026-03-02").glob("*.csv")).read_text(encoding="utf-8")
    assert ',"",' in csv_text and ",," in csv_text


def test_the_empty_run_left_header_only_files_first_in_every_glob(trees: Path) -> None:
    for table in TABLES:
        first = sorted((trees / "csv" / table).rglob("*.csv"))[0]
        if table in ("products", "matches"):
            assert first.parent.name == "dt=2026-03-01" and len(first.read_text().splitlines()) == 1
    assert any("\n" in str(r["title"]) for r in truth(trees, PRODUCTS))


def test_the_schema_docs_show_the_readers_options() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "schema.md").read_text(encoding="utf-8")
    for table in TREES:
        glob = f"data/datasets/csv/{table.name}/" + ("**/*.csv" if partitioned(table) else "*.csv")
        assert duckdb_read_csv(table, glob, partitioned(table)) in text
        assert polars_read_csv(table, glob, partitioned(table)) in text
        assert "allow_quoted_nulls = false" in duckdb_read_csv(table, glob, partitioned(table))
        assert "quoted_strings_can_be_null=False" in text


# -- the excel dialect ------------------------------------------------------------------------


def excel_csv(table: Table, records: list[dict[str, Any]]) -> bytes:
    converter = TableConverter(table)
    batch, _ = converter.to_batch([converter.row(r) for r in records])
    buffer = io.BytesIO()
    writer = CsvTableWriter(buffer, table, dialect="excel")
    writer.write(batch)
    writer.close()
    return buffer.getvalue()


def test_the_excel_dialect_keeps_ids_exact_neutralises_formulas_and_dates_excel_reads() -> None:
    records = [{"num_iid": 652345678901 + i, "title": t, "seller_nick": "-shop", "run_id": "r",
                "crawled_at": datetime(2026, 11, 25, 10, 15, 7, 654321, tzinfo=UTC)} for i, t in enumerate(HOSTILE)]
    data = excel_csv(PRODUCTS, records)
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    lines = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    titles = {r["title"] for r in lines}
    assert {"'=1+2", "'+33 1 23", "'-2", "'@SUM(A1)", "'\ttab first"} <= titles
    assert {'a,"b"', "line one\nline two", "中文 标题 ￥39.9起", "'quoted already", "  "} <= titles
    assert lines[0]["num_iid"] == '="652345678901"' and lines[0]["seller_nick"] == "'-shop"
    assert lines[0]["crawled_at"] == "2026-11-25 10:15:07" and lines[0]["run_started_at"] == ""
    assert lines[0]["is_tmall"] == ""


def test_a_crawl_with_the_excel_dialect_writes_it_to_the_csv_tree(tmp_path: Path) -> None:
    run = stage(tmp_path, "excel", 0, ["=HYPERLINK(\"http://x\")", "plain"])
    manifest = commit_staged(tmp_path, run, ["parquet", "csv"], 0, "zstd", "finished", {}, csv_dialect="excel")
    assert manifest["csv_dialect"] == "excel"
    for path in (tmp_path / "csv").rglob("*.csv"):
        assert path.read_bytes().startswith(b"\xef\xbb\xbf"), path
    products = next((tmp_path / "csv" / "products").rglob("*.csv")).read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in products and '"=""652345678901"""' in products
    # The Parquet tree is the same whatever the CSV dialect.
    assert {r["title"] for r in truth(tmp_path, PRODUCTS)} == {"=HYPERLINK(\"http://x\")", "plain"}
