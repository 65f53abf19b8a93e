"""The tables a commit publishes (products, matches, seeds, runs), built from the staged rows by DuckDB,
out of core, and written in every DATASET_FORMATS format into the staging's ``out/`` directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from exporters.itemexporters import TableWriter, table_writer
from exporters.layout import (
    INCOMPLETE_DIR,
    batch_file_name,
    partition_dir,
)
from exporters.tables import TableConverter
from items.schema import MATCHES, OFFERS, PRODUCTS, RUNS, SEEDS, TABLES, Table
from pipeline.pictures import MAX_COLOUR, MAX_DISTANCE
from pipeline.runs.identity import WORKERS_DIR, RunInfo
from pipeline.runs.offers import OFFERS_STAGED, stage_offers
from pipeline.runs.staging import STAGED_TABLES

#: Memory DuckDB may use to build the tables before it spills to the staging directory. 256 MB was enough
#: before the offers table; at 1,000,000 staged hits (bench_commit.py) its final join of the five step
#: tables then ran out of 256 MB in one run of two, and passes at 512 MB.
COMMIT_MEMORY_LIMIT = "512MB"
#: Rows per batch read back from DuckDB while the tables are written.
COMMIT_BATCH_ROWS = 65_536


def conform(batch: pa.RecordBatch, table: Table) -> pa.RecordBatch:
    """A batch DuckDB gave back, in ``table``'s exact schema (column order, types, UTC)."""
    schema = table.arrow_schema
    arrays = [batch.column(field.name).cast(field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


#: How each published table is built from the staged ones (``hits``, ``seeds``), in DuckDB's SQL.
#: Each staged hit with its product's fused rank for its seed: reciprocal rank fusion over the seed's views
#: (the sum of 1 / (RRF_K + the product's best position in each view); Cormack, Clarke & Buttcher, SIGIR
#: 2009), ties to the better single position, then the smaller num_iid. One view: the order of its positions.
RRF_K = 60
FUSED_HITS = (
    "SELECT h.*, f.fused_rank FROM read_parquet($hits) h JOIN ("
    "SELECT seed_id, num_iid, (row_number() OVER (PARTITION BY seed_id "
    f"ORDER BY sum(1.0 / ({RRF_K} + best)) DESC, min(best), num_iid))::INTEGER AS fused_rank "
    "FROM (SELECT seed_id, view, num_iid, min(position) AS best FROM read_parquet($hits) GROUP BY ALL) "
    "GROUP BY seed_id, num_iid) f USING (seed_id, num_iid)"
)
#: Each staged hit with its product's offer group (the commit's ``offers.parquet``, pipeline/runs/offers.py).
_OFFERED_HITS = f"SELECT h.*, o.offer_id FROM ({FUSED_HITS}) h JOIN read_parquet($offers) o USING (num_iid)"
_PRODUCTS = (
    f"SELECT *, seed_id AS first_seed_id FROM ({_OFFERED_HITS}) "
    "QUALIFY row_number() OVER (PARTITION BY num_iid ORDER BY seed_rank, fused_rank, view, position, page) = 1"
)
#: An offer group's row: its listings' spread (each listing's price_min), the cheapest listing (then the
#: smaller num_iid), and the listing the first seed given found first (its title and picture). Built in
#: steps, each a temporary table DuckDB can spill (one query of it all ran out of 512 MB at 750,000 groups),
#: from the products rows as the commit wrote them (``$offer_products``, with their seed_rank and fused_rank).
OFFER_STEPS = (
    "CREATE TEMP TABLE offer_counts AS SELECT offer_id, any_value(run_id) AS run_id, any_value(run_started_at) "
    "AS run_started_at, count(*) AS listings, count(DISTINCT seller_nick) AS sellers, count(*) FILTER (is_tmall) "
    "AS tmall_listings, count(price_min) AS priced_listings, min(price_min) AS price_min, max(price_min) AS "
    "price_max FROM read_parquet($offer_products) GROUP BY offer_id",
    "CREATE TEMP TABLE offer_medians AS SELECT offer_id, median(price_min)::DECIMAL(14, 2) AS price_median "
    "FROM read_parquet($offer_products) GROUP BY offer_id",
    "CREATE TEMP TABLE offer_cheapest AS SELECT offer_id, num_iid AS cheapest_num_iid, seller_nick AS "
    "cheapest_seller_nick, detail_url AS cheapest_detail_url FROM read_parquet($offer_products) "
    "WHERE price_min IS NOT NULL QUALIFY row_number() OVER (PARTITION BY offer_id ORDER BY price_min, num_iid) = 1",
    "CREATE TEMP TABLE offer_firsts AS SELECT offer_id, title, pic_url, pic_hash, seed_rank AS first_rank, "
    "fused_rank AS first_fused FROM read_parquet($offer_products) "
    "QUALIFY row_number() OVER (PARTITION BY offer_id ORDER BY seed_rank, fused_rank, num_iid) = 1",
    "CREATE TEMP TABLE offer_seeds AS SELECT offer_id, string_agg(seed_id, '; ' ORDER BY seed_rank, seed_id) AS "
    "seed_ids, count(*) AS seeds FROM (SELECT DISTINCT o.offer_id, h.seed_id, h.seed_rank FROM read_parquet($hits) "
    "h JOIN read_parquet($offers) o USING (num_iid)) GROUP BY offer_id",
)
_OFFER_ROWS = (
    "SELECT c.*, m.price_median, s.seed_ids, s.seeds, x.cheapest_num_iid, x.cheapest_seller_nick, "
    "x.cheapest_detail_url, f.title, f.pic_url, f.pic_hash FROM offer_counts c JOIN offer_medians m USING (offer_id) "
    "JOIN offer_seeds s USING (offer_id) JOIN offer_firsts f USING (offer_id) LEFT JOIN offer_cheapest x "
    "USING (offer_id) ORDER BY f.first_rank, f.first_fused, c.offer_id"
)
#: How each published table is built from the staged ones (``hits``, ``seeds``, ``offers``), in DuckDB's SQL.
TABLE_QUERIES: dict[str, str] = {
    PRODUCTS.name: f"{_PRODUCTS} ORDER BY num_iid",
    MATCHES.name: f"SELECT * FROM ({_OFFERED_HITS}) ORDER BY seed_rank, seed_id, view, position, page, num_iid",
    SEEDS.name: "SELECT * FROM read_parquet($seeds) ORDER BY seed_rank, seed_id, view",
    # The rows build_tables wrote (OFFER_STEPS, then _OFFER_ROWS), for products_latest's kin offers_latest.
    OFFERS.name: "SELECT * FROM read_parquet($offer_rows)",
}


class TableFiles:
    """The files of one table in every format, started anew every ``batch_items`` rows (0: one file)."""

    def __init__(self, out: Path, table: Table, run: RunInfo, formats: list[str], batch_items: int,
                 compression: str, prefix: Path, csv_dialect: str = "standard") -> None:
        self.out, self.table, self.run, self.prefix = out, table, run, prefix
        self.csv_dialect = csv_dialect
        self.formats, self.batch_items, self.compression = formats, batch_items, compression
        self.files: list[dict[str, Any]] = []
        self._open: list[tuple[TableWriter, IO[bytes], Path, str, str]] = []
        self._rows_in_file = 0
        self._number = 0

    def _start(self) -> None:
        self._number += 1
        for fmt in self.formats:
            relative = partition_dir(self.prefix, fmt, self.table.name, self.run.dt) / batch_file_name(
                self.run.run_id, fmt, self._number
            )
            path = self.out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("wb")
            writer = table_writer(fmt, file, self.table, self.compression, csv_dialect=self.csv_dialect)
            self._open.append((writer, file, path, relative.as_posix(), fmt))
        self._rows_in_file = 0

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if not self._open:
                self._start()
            room = self.batch_items - self._rows_in_file if self.batch_items else batch.num_rows
            part, batch = batch.slice(0, room), batch.slice(room)
            for writer, *_ in self._open:
                writer.write(part)
            self._rows_in_file += part.num_rows
            if self.batch_items and self._rows_in_file >= self.batch_items:
                self.close()

    def write_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Every batch, then ``close``; the files in progress given up if a write fails."""
        try:
            for batch in batches:
                self.write(conform(batch, self.table))
            self.close()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Give up the files in progress after a failed write."""
        for writer, file, *_ in self._open:
            writer.abandon()
            with contextlib.suppress(OSError):
                file.close()
        self._open = []

    def close(self) -> None:
        """End the files in progress, durably; every table has a file, an empty one too."""
        if not self._open and not self.files:
            self._start()
        for writer, file, path, relative, fmt in self._open:
            writer.close()
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self.files.append({"path": relative, "format": fmt, "table": self.table.name,
                               "rows": writer.rows_written, "bytes": path.stat().st_size})
        self._open = []


@contextlib.contextmanager
def database(staging: Path) -> Iterator[Any]:
    """A DuckDB connection for building a run's tables: bounded memory, spilling into the staging, UTC."""
    import duckdb

    with contextlib.closing(duckdb.connect()) as con:
        spill = staging / "duckdb"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET memory_limit = '{COMMIT_MEMORY_LIMIT}'")
        con.execute("SET temp_directory = ?", [str(spill)])
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")
        yield con


def staged_paths(staging: Path) -> dict[str, str]:
    return {name: str(staging / f"{name}.parquet")
            for name in (*STAGED_TABLES, OFFERS_STAGED, "offer_products", "offer_rows")}


def build_tables(staging: Path, out: Path, run: RunInfo, formats: list[str], batch_items: int,
                 compression: str, complete: bool = True, csv_dialect: str = "standard",
                 latest: Path | None = None, grouping: tuple[int, float] = (MAX_DISTANCE, MAX_COLOUR)
                 ) -> list[dict[str, Any]]:
    """Build products, matches, seeds and offers from the staged rows into ``out``, in every format; their
    file records. The offer groups first (``grouping``: the largest pic_hash distance and colour distance of
    one group), their ids kept from the products_latest at ``latest``. A run that is not ``complete`` goes
    under ``_incomplete/``."""
    with database(staging) as con:
        staged = staged_paths(staging)
        stage_offers(con, staged["hits"], Path(staged[OFFERS_STAGED]), latest or staging / "none.parquet", *grouping)
        files: list[dict[str, Any]] = []
        for name, query in TABLE_QUERIES.items():
            target = TableFiles(out, TABLES[name], run, formats, batch_items, compression,
                                 Path() if complete else Path(INCOMPLETE_DIR), csv_dialect)
            if name == OFFERS.name:  # in steps, from the products rows kept as they were written
                for step in OFFER_STEPS:
                    con.execute(step, {key: path for key, path in staged.items() if f"${key}" in step})
                rows = _kept(con.sql(_OFFER_ROWS).to_arrow_reader(COMMIT_BATCH_ROWS), Path(staged["offer_rows"]),
                             OFFERS)
            else:
                params = {key: path for key, path in staged.items() if f"${key}" in query}
                rows = con.sql(query, params=params).to_arrow_reader(COMMIT_BATCH_ROWS)
                if name == PRODUCTS.name:
                    rows = _kept(rows, Path(staged["offer_products"]))
            target.write_all(rows)
            files += target.files
    return sorted(files, key=lambda f: f["path"])


def _kept(reader: Any, path: Path, table: Table | None = None) -> Iterator[pa.RecordBatch]:
    """The batches of ``reader`` (in ``table``'s schema, if given), each written to ``path`` too as it passes."""
    schema = table.arrow_schema if table is not None else reader.schema
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in reader:
            batch = conform(batch, table) if table is not None else batch
            writer.write_batch(batch)
            yield batch


def merge_worker_parts(staging: Path, owners: dict[str, str], seed_jobs: dict[tuple[str, int], str]) -> None:
    """A shared run's staged tables, from every worker's parts (``staging/workers/<worker>/``): for each seed
    photo, the rows of the worker that owns its search (``owners``: search -> worker; ``seed_jobs``: (seed,
    view) -> search), each hit once (a worker that redid a search after a restart staged it twice). Written
    where a single crawl stages them, for ``commit_staged``."""
    with database(staging) as con:
        con.execute("CREATE TEMP TABLE owner (seed_id VARCHAR, view INTEGER, worker VARCHAR)")
        rows = [(seed, view, owners[job]) for (seed, view), job in seed_jobs.items() if job in owners]
        if rows:
            con.executemany("INSERT INTO owner VALUES (?, ?, ?)", rows)
        for name, table in STAGED_TABLES.items():
            parts = sorted(str(p) for p in (staging / WORKERS_DIR).glob(f"*/{name}-*.parquet"))
            target = staging / f"{name}.parquet"
            key = "s.seed_id, s.view" if name == SEEDS.name else "s.seed_id, s.view, s.page, s.position"
            writer = pq.ParquetWriter(target, table.arrow_schema, compression="zstd")
            try:
                if parts:
                    query = (
                        f"SELECT s.* EXCLUDE (filename) FROM read_parquet($parts, filename = true) s "
                        f"JOIN owner o ON s.seed_id = o.seed_id AND s.view = o.view "
                        f"AND regexp_extract(s.filename, '/{WORKERS_DIR}/([^/]+)/[^/]+$', 1) = o.worker "
                        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY s.filename DESC) = 1"
                    )
                    for batch in con.execute(query, {"parts": parts}).to_arrow_reader(COMMIT_BATCH_ROWS):
                        writer.write_batch(conform(batch, table))
            finally:
                writer.close()


def build_runs_row(out: Path, run: RunInfo, formats: list[str], compression: str, complete: bool,
                   row: dict[str, Any], csv_dialect: str = "standard") -> list[dict[str, Any]]:
    """The run's one ``runs`` row, written into ``out`` in every format; its file records."""
    target = TableFiles(out, RUNS, run, formats, 0, compression, Path() if complete else Path(INCOMPLETE_DIR),
                         csv_dialect)
    batch, rejected = TableConverter(RUNS).to_batch([tuple(row.get(name) for name in RUNS.column_names)])
    if rejected:
        raise ValueError(f"the runs row of run {run.run_id} lacks a required value: {row}")
    target.write_all([batch])
    return target.files

