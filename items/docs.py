"""Renders docs/schema.md from items.schema: ``python -m items.docs > docs/schema.md``."""

from __future__ import annotations

import logging
import sys

import pyarrow as pa

from items.schema import HITS, SNAPSHOTS, TABLES, Table

logger = logging.getLogger(__name__)

_DUCKDB_TYPES = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN",
                 pa.float64(): "DOUBLE"}
_PANDAS_TYPES = {pa.int64(): "Int64", pa.int32(): "Int32", pa.string(): "string", pa.bool_(): "boolean",
                 pa.float64(): "Float64"}


def duckdb_type(type_: pa.DataType) -> str:
    """The DuckDB type a column reads back as from Parquet (and should be declared as for CSV)."""
    if pa.types.is_decimal(type_):
        return f"DECIMAL({type_.precision},{type_.scale})"
    if pa.types.is_timestamp(type_):
        return "TIMESTAMPTZ" if type_.tz else "TIMESTAMP"
    return _DUCKDB_TYPES[type_]


def duckdb_csv_columns(table: Table) -> str:
    """The ``columns=`` argument of DuckDB's ``read_csv`` that reads *table*'s CSV with exact types."""
    return "{" + ", ".join(f"'{c.name}': '{duckdb_type(c.type)}'" for c in table.columns) + "}"


#: The dialect DuckDB's read_csv should be told rather than sniff: a header-only file (an empty run's)
#: tells the sniffer nothing, and it then refuses a later file with a quote inside a field. Quoted
#: fields are never null: ``""`` is an empty text, an empty unquoted field a null, as in Parquet.
DUCKDB_CSV_DIALECT = "delim = ',', quote = '\"', escape = '\"', allow_quoted_nulls = false"


def sql_paths(path: str | list[str]) -> str:
    """A path (a glob) or a list of paths as a DuckDB SQL literal: ``'a/*.csv'``, ``['a.csv', 'b.csv']``."""
    if isinstance(path, str):
        return "'" + path.replace("'", "''") + "'"
    return "[" + ", ".join(sql_paths(p) for p in path) + "]"


def duckdb_read_csv(table: Table, path: str | list[str], partitioned: bool = True) -> str:
    """DuckDB's ``read_csv(...)`` of *table*'s CSV files at *path* (a glob, or a list of files), exact
    types (and ``dt``)."""
    hive = "hive_partitioning = true, " if partitioned else ""
    return (f"read_csv({sql_paths(path)}, header = true, {hive}{DUCKDB_CSV_DIALECT},\n"
            f"    columns = {duckdb_csv_columns(table)})")


_POLARS_TYPES = {pa.int64(): "pl.Int64", pa.int32(): "pl.Int32", pa.string(): "pl.String", pa.bool_(): "pl.Boolean",
                 pa.float64(): "pl.Float64"}


def polars_type(type_: pa.DataType) -> str:
    """The polars dtype, as Python source, a column reads as."""
    if pa.types.is_decimal(type_):
        return f"pl.Decimal({type_.precision}, {type_.scale})"
    if pa.types.is_timestamp(type_):
        return f'pl.Datetime("{type_.unit}", "{type_.tz}")' if type_.tz else f'pl.Datetime("{type_.unit}")'
    return _POLARS_TYPES[type_]


def polars_read_csv(table: Table, path: str, partitioned: bool = True) -> str:
    """``pl.read_csv(...)`` of *table*'s CSV files at *path* (a glob), as Python source: exact types, and
    ``dt`` from the file's directory (polars reads hive partitions of Parquet, not of CSV)."""
    schema = "{" + ", ".join(f'"{c.name}": {polars_type(c.type)}' for c in table.columns) + "}"
    if not partitioned:
        return f'pl.read_csv("{path}",\n    schema={schema})'
    return (f'(pl.read_csv("{path}", include_file_paths="path",\n'
            f"    schema={schema})\n"
            ' .with_columns(dt=pl.col("path").str.extract(r"dt=(\\d{4}-\\d{2}-\\d{2})").str.to_date())'
            '.drop("path"))')


_SPARK_TYPES = {pa.int64(): "BIGINT", pa.int32(): "INT", pa.string(): "STRING", pa.bool_(): "BOOLEAN",
                pa.float64(): "DOUBLE"}


def spark_schema(table: Table) -> str:
    """The DDL schema Spark's CSV reader takes for *table* (exact decimals; the CSV times parse as TIMESTAMP)."""
    def spark_type(type_: pa.DataType) -> str:
        if pa.types.is_decimal(type_):
            return f"DECIMAL({type_.precision},{type_.scale})"
        return "TIMESTAMP" if pa.types.is_timestamp(type_) else _SPARK_TYPES[type_]

    return ", ".join(f"{c.name} {spark_type(c.type)}" for c in table.columns)


def arrow_type_source(type_: pa.DataType) -> str:
    """A column's Arrow type as pyarrow source (``pa.decimal128(14, 2)``)."""
    if pa.types.is_decimal(type_):
        return f"pa.decimal128({type_.precision}, {type_.scale})"
    if pa.types.is_timestamp(type_):
        return f'pa.timestamp("{type_.unit}", tz="{type_.tz}")' if type_.tz else f'pa.timestamp("{type_.unit}")'
    return {pa.int64(): "pa.int64()", pa.int32(): "pa.int32()", pa.string(): "pa.string()",
            pa.bool_(): "pa.bool_()", pa.float64(): "pa.float64()"}[type_]


def pyarrow_read_csv(table: Table, path: str) -> str:
    """``pyarrow.csv.read_csv(...)`` of one of *table*'s CSV files, as Python source: the Parquet types
    exactly, ``""`` an empty text and an empty field null; ``.to_pandas(types_mapper=pd.ArrowDtype)``
    makes it the pandas frame that keeps both."""
    types = "{" + ", ".join(f'"{c.name}": {arrow_type_source(c.type)}' for c in table.columns) + "}"
    return (f'pyarrow.csv.read_csv("{path}", convert_options=pyarrow.csv.ConvertOptions(\n'
            f"    column_types={types},\n"
            "    strings_can_be_null=True, quoted_strings_can_be_null=False))")


def pandas_read_csv_kwargs(table: Table) -> dict[str, object]:
    """``pandas.read_csv`` keyword arguments that read *table*'s CSV with nullable exact types.

    Prices stay text (pandas has no decimal dtype): convert with ``decimal.Decimal`` if you need exact sums.
    """
    dtype = {c.name: _PANDAS_TYPES.get(c.type, "string") for c in table.columns if not pa.types.is_timestamp(c.type)}
    parse_dates = [c.name for c in table.columns if pa.types.is_timestamp(c.type)]
    return {"dtype": dtype, "parse_dates": parse_dates, "keep_default_na": False, "na_values": [""]}


def render_table(table: Table, partitioned: bool = True) -> str:
    csv_glob = f"data/datasets/csv/{table.name}/" + ("**/*.csv" if partitioned else "*.csv")
    csv_file = csv_glob.replace("**/*.csv", "dt=2026-11-25/20261125T101500Z-3fa2c1-00001.csv").replace(
        "*.csv", f"{table.name}.csv")
    lines = [
        f"## `{table.name}`",
        "",
        table.doc,
        "",
        "| column | Arrow / Parquet type | DuckDB type | nullable | meaning |",
        "|---|---|---|---|---|",
    ]
    for c in table.columns:
        lines.append(
            f"| `{c.name}` | `{c.type}` | `{duckdb_type(c.type)}` | {'yes' if c.nullable else 'no'} | {c.doc} |"
        )
    lines += [
        "",
        "Read the CSV tree with exact types (the standard dialect):",
        "",
        "```sql",
        f"SELECT * FROM {duckdb_read_csv(table, csv_glob, partitioned)};",
        "```",
        "",
        "```python",
        "# pandas: both \"\" and an empty field become <NA> (its parser drops the quotes before na_values apply)",
        f"pandas.read_csv(path, **{pandas_read_csv_kwargs(table)!r})",
        "# pyarrow (.to_pandas(types_mapper=pandas.ArrowDtype) for pandas): exact types, \"\" apart from null",
        f"{pyarrow_read_csv(table, csv_file)}",
        "# polars: \"\" is an empty text and an empty field null by default",
        f"{polars_read_csv(table, csv_glob, partitioned)}",
        "# Spark (pyspark 4.3 checked once: without multiLine and escape it splits titles that hold a newline;",
        "# by its docs a quoted \"\" reads as emptyValue, \"\" by default, and an empty field as null: not run here)",
        f"spark.read.options(header=True, multiLine=True, escape='\"').schema(\"{spark_schema(table)}\")"
        f".csv(\"{csv_glob.rsplit('/', 2 if partitioned else 1)[0]}\")",
        "```",
        "",
    ]
    return "\n".join(lines)


def render() -> str:
    """docs/schema.md, whole."""
    head = """# Dataset schema

<!-- Generated by `python -m items.docs > docs/schema.md` from items/schema.py; do not edit by hand. -->

Every crawl run writes four tables (products, matches, seeds, runs), each in every format of
`DATASET_FORMATS`, and replaces `products_latest`:

```
DATASET_DIR/<format>/<table>/dt=<YYYY-MM-DD>/<run_id>-<NNNNN>.<ext>   # format: parquet | csv
DATASET_DIR/<format>/products_latest/products_latest.<ext>             # replaced at each finished run
DATASET_DIR/_manifests/<run_id>.json                                  # written last: the run is finished
```

- `dt` is the run's UTC start date (`DATASET_RUN_DATE`), `run_id` is sortable (`20261125T101500Z-3fa2c1`)
  and in every row and file name, so runs never overwrite each other; a new file starts every
  `DATASET_BATCH_ITEMS` rows.
- While it crawls, a run stages every hit (the `hits` table below) and every seed's outcome
  under `DATASET_DIR/_staging/<run_id>/` (no reader's glob reaches it). When it has finished it
  builds `products` (one row per `num_iid`: the first seed in the order given wins, then its best
  position), `matches` and `seeds` from them there, and moves the files into the tree, each by an
  atomic rename, just before its manifest; so no reader ever meets a half-written file. A commit
  cut short by a kill is finished by the next crawl in the same DATASET_DIR (or
  `python -m pipeline.runs DATASET_DIR`). A scheduled import should take the files a manifest
  lists, from manifests with `"complete": true`; a run without a manifest is still running, or
  was stopped and will be resumed (`-s JOBDIR=...`). A run stopped without JOBDIR is committed as
  it is, with `"complete": false`.
- Parquet: the schema below (zstd, row groups of `PARQUET_ROW_GROUP_SIZE` rows).
  `read_parquet('data/datasets/parquet/products/**/*.parquet', hive_partitioning = true)` in DuckDB,
  `pyarrow.dataset.dataset(path, partitioning="hive")` or `pandas.read_parquet(path)`.
- CSV (`CSV_DIALECT=standard`, the default): UTF-8 without BOM, header row of the column names in
  the order below, fields quoted when needed, a quote inside a field doubled (RFC 4180; a field may
  hold a newline); null is an empty field and an empty text a quoted one (`""`), so the readers that
  can keep them apart give back exactly the Parquet values: DuckDB with `allow_quoted_nulls = false`
  (in the calls below), pyarrow with `quoted_strings_can_be_null=False`, polars and Spark by default;
  `pandas.read_csv` gives null for both (read through pyarrow, below, to keep `""`); decimals plain
  text with two places (`39.50`); booleans
  `true`/`false`; timestamps ISO 8601 UTC with microseconds (`2026-11-25T10:15:00.123456Z`).
  `CSV_DIALECT=excel` is for opening the files in Excel: a UTF-8 BOM, `num_iid` and `cat` as
  `="652345678901"`, a `'` before any text starting with `=`, `+`, `-`, `@`, tab or CR, timestamps
  `2026-11-25 10:15:00` (UTC, whole seconds); the options below then give those columns as text.
  Declare the columns as below: DuckDB's `read_csv_auto` guesses prices as DOUBLE (inexact),
  page and position as BIGINT and every column of an empty file as VARCHAR; pandas guesses
  nothing. The keyword arguments below give each reader the exact types.
- `dt` comes from the directory names, not the files: DuckDB (`hive_partitioning = true`) reads it
  as DATE, `pyarrow.dataset` as a string and `pandas.read_parquet` as a category. For a date in
  pyarrow: `partitioning=ds.partitioning(pa.schema([("dt", pa.date32())]), flavor="hive")`.

"""
    feeds = """
## Feeds of your own

`-o`/`-O` (FEEDS) write what the crawl yields, as it yields it: `-O out.parquet` or `-O out.csv`
writes the `hits` table, and `item_export_kwargs: {"table": "matches"}` or `"seeds"` the others.
`products` exists only in the dataset layout: it is built from all the hits when a run commits.

"""
    snapshots = "\n".join(render_table(t, partitioned=False) for t in SNAPSHOTS.values())
    return head + "\n".join(render_table(t) for t in TABLES.values()) + snapshots + feeds + render_table(HITS)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
