"""Writing one table as typed Parquet or CSV: batch writers, and the Scrapy item exporters of -o/-O feeds."""

from __future__ import annotations

import logging
from typing import IO, TYPE_CHECKING, Any, ClassVar, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from scrapy.exporters import BaseItemExporter

from exporters.tables import DEFAULT_TABLE, TABLE_ACCEPTS, TableConverter, get_table

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

    from items.schema import Table

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_ROWS = 10_000


class TableWriter:
    """Writes record batches of one table to a binary file in one format; ``close()`` ends the file."""

    format_name: ClassVar[str]

    def __init__(self, file: IO[bytes], table: Table) -> None:
        self.file = file
        self.table = table
        self.rows_written = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._write(batch)
            self.rows_written += batch.num_rows

    def _write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """Give the file up after a failed write: nothing more is written to it, not even when collected."""


class ParquetTableWriter(TableWriter):
    """A Parquet file with the schema of ``items.schema``, one row group per batch written.

    Only the columns that repeat (``Column.repeats``) are dictionary-encoded.
    """

    format_name = "parquet"

    def __init__(self, file: IO[bytes], table: Table, compression: str = "zstd",
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(file, table)
        schema = table.arrow_schema
        if metadata:
            schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
        # pyarrow takes any codec name and a list of columns to dictionary-encode; pyarrow-stubs
        # declare only literal codec names and a bool.
        self._writer = pq.ParquetWriter(
            file, schema,
            compression=compression,  # type: ignore[arg-type]
            use_dictionary=table.dictionary_columns,  # type: ignore[arg-type]
        )

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch, row_group_size=batch.num_rows)

    def close(self) -> None:
        try:
            self._writer.close()  # writes the footer; whoever opened the file closes it
        finally:
            self.abandon()

    def abandon(self) -> None:
        self._writer.is_open = False  # else collecting it writes the footer: a second failure, as a traceback


#: The CSV dialects CSV_DIALECT may name.
CSV_DIALECTS: tuple[str, ...] = ("standard", "excel")
#: A cell Excel (and LibreOffice, Google Sheets) would run as a formula: OWASP's list of first characters.
_FORMULA_START = r"^[=+\-@\t\r]"


#: Concatenates strings and string arrays (the last argument: the separator). pyarrow takes scalars and
#: arrays mixed; pyarrow-stubs declare all of one kind.
_join: Any = pc.binary_join_element_wise


class CsvTableWriter(TableWriter):
    """CSV for BI tools, in one of two dialects; a header of schema column names, same order as Parquet.

    ``standard`` (the default, for DuckDB, pandas, polars, Spark, Power BI): UTF-8 without BOM;
    nulls are empty fields; decimals plain text with their scale ("39.50"); booleans
    ``true``/``false``; timestamps ISO 8601 UTC (``2026-11-25T10:15:00.123456Z``); every value
    exactly as in Parquet. Fields are quoted only when needed, quotes doubled (RFC 4180).

    ``excel`` (``CSV_DIALECT=excel``, for a double-click in Excel): UTF-8 with a BOM (else Excel reads
    it as the system code page: mojibake); identifier columns (``num_iid``, ``cat``) written as
    ``="652345678901"`` so Excel keeps them as exact text rather than ``6.52346E+11``; a text that
    would start a formula (``=``, ``+``, ``-``, ``@``, tab, CR) prefixed with ``'``; timestamps as
    ``2026-11-25 10:15:00`` (UTC, whole seconds), which Excel takes for a date and time.

    Rows are formatted by Arrow's CSV writer from the same typed batches as Parquet.
    """

    format_name = "csv"

    def __init__(self, file: IO[bytes], table: Table, include_header: bool = True, dialect: str = "standard") -> None:
        super().__init__(file, table)
        if dialect not in CSV_DIALECTS:
            raise ValueError(f"unknown CSV dialect {dialect!r}: choose {' or '.join(CSV_DIALECTS)}")
        self.excel = dialect == "excel"
        schema = table.arrow_schema
        self._timestamps = [i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)]
        self._texts = [i for i, f in enumerate(schema) if pa.types.is_string(f.type)] if self.excel else []
        self._identifiers = [i for i, c in enumerate(table.columns) if c.identifier] if self.excel else []
        for i in {*self._timestamps, *self._identifiers}:
            schema = schema.set(i, schema.field(i).with_type(pa.string()))
        self._csv_schema = schema
        self._time_format = "%Y-%m-%d %H:%M:%S" if self.excel else "%Y-%m-%dT%H:%M:%SZ"
        if self.excel and include_header:
            file.write(b"\xef\xbb\xbf")  # the BOM: pyarrow's writer has no option for one
        options = pa_csv.WriteOptions(include_header=include_header, quoting_style="needed")
        self._writer = pa_csv.CSVWriter(file, schema, write_options=options)

    def _write(self, batch: pa.RecordBatch) -> None:
        if self._timestamps or self._texts:
            arrays = list(batch.columns)
            for i in self._timestamps:
                # Arrow prints "2026-11-25 10:15:00.123456Z"; ISO 8601 wants the T. %S includes the microseconds.
                # strftime costs 1 us a value: each distinct time (one per result page) is formatted once.
                encoded = arrays[i].dictionary_encode()
                times = cast("pa.TimestampArray", encoded.dictionary)
                if self.excel:
                    times = pc.floor_temporal(times, unit="second")
                    times = cast("pa.TimestampArray", times.cast(pa.timestamp("s", tz="UTC")))
                arrays[i] = pc.strftime(times, format=self._time_format).take(encoded.indices)
            for i in self._texts:
                text = arrays[i]
                arrays[i] = pc.if_else(pc.match_substring_regex(text, _FORMULA_START), _join("'", text, ""), text)
            for i in self._identifiers:
                arrays[i] = _join('="', arrays[i].cast(pa.string()), '"', "")
            batch = pa.RecordBatch.from_arrays(arrays, schema=self._csv_schema)
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def table_writer(fmt: str, file: IO[bytes], table: Table, compression: str = "zstd",
                 metadata: dict[str, str] | None = None, csv_dialect: str = "standard") -> TableWriter:
    """The writer of ``table`` in dataset format ``fmt`` (``parquet`` takes the compression codec, and
    ``metadata`` for its schema; ``csv`` its dialect)."""
    if fmt == ParquetTableWriter.format_name:
        return ParquetTableWriter(file, table, compression, metadata)
    if fmt == CsvTableWriter.format_name:
        return CsvTableWriter(file, table, dialect=csv_dialect)
    raise ValueError(f"unknown dataset format {fmt!r}")


class TableItemExporter(BaseItemExporter):
    """A Scrapy item exporter for feeds of the user's own (``-o``/``-O``): one table, typed, in bounded memory.

    The table comes from the feed option ``item_export_kwargs: {"table": "hits"}``; without it
    (``-O out.parquet``) the feed writes ``hits`` (DEFAULT_TABLE), and items that do not belong to
    it are skipped and counted. Rows are buffered ``buffer_rows`` (PARQUET_ROW_GROUP_SIZE) at a
    time and converted with pyarrow, so memory stays bounded whatever the crawl's size.
    """

    format_name: ClassVar[str]

    def __init__(
        self,
        file: IO[bytes],
        *,
        table: str | None = None,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        stats: StatsCollector | None = None,
        **kwargs: Any,
    ):
        super().__init__(dont_fail=True, **kwargs)
        if self.fields_to_export is not None:
            logger.warning(
                "%s ignores fields_to_export / FEED_EXPORT_FIELDS: columns come from items.schema", type(self).__name__
            )
        if self.encoding not in (None, "utf-8", "utf8"):
            logger.warning("%s always writes UTF-8, not %s", type(self).__name__, self.encoding)
        if buffer_rows < 1:
            raise ValueError(f"buffer_rows must be >= 1, got {buffer_rows}")
        self.file = file
        self.buffer_rows = buffer_rows
        self.stats = stats
        # With an explicit table the feed's item_filter routes items; with the default one we filter here.
        self._accepts: Callable[[Any], bool] | None = None
        if not table:
            table = DEFAULT_TABLE
            self._accepts = TABLE_ACCEPTS[table]
            logger.info(
                "%s feed without a table option writes the %s table (FEEDS item_export_kwargs "
                "{'table': ...} picks another)", self.format_name, table,
            )
        self.table: Table = get_table(table)
        self._converter = TableConverter(self.table)
        self._rows: list[tuple[Any, ...]] = []
        self._writer: TableWriter | None = None

    @property
    def rows_written(self) -> int:
        return self._writer.rows_written if self._writer is not None else 0

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> Self:
        kwargs.setdefault("stats", crawler.stats)
        options = {"buffer_rows": crawler.settings.getint("PARQUET_ROW_GROUP_SIZE", DEFAULT_BUFFER_ROWS)}
        return cls(file, **{**options, **cls._settings_kwargs(crawler), **kwargs})

    @classmethod
    def _settings_kwargs(cls, crawler: Crawler) -> dict[str, Any]:
        return {}

    def start_exporting(self) -> None:
        if self._writer is None:
            self._writer = self._open_writer()

    def export_item(self, item: Any) -> None:
        if self._accepts is not None and not self._accepts(item):
            self._count("skipped", 1)
            return
        rows = self._rows
        rows.append(self._converter.row(item))
        if len(rows) >= self.buffer_rows:
            self._flush()

    def finish_exporting(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        assert self._writer is not None, "export_item before start_exporting"
        batch, rejected = self._converter.to_batch(rows)
        if rejected:
            logger.error("%s/%s: %d rows without a required value not written",
                         self.format_name, self.table.name, rejected)
            self._count("rejected_rows", rejected)
        self._writer.write(batch)

    def _count(self, what: str, n: int) -> None:
        if self.stats is not None:
            self.stats.inc_value(f"dataset/export/{what}/{self.format_name}/{self.table.name}", n)

    def _open_writer(self) -> TableWriter:
        raise NotImplementedError


class ParquetItemExporter(TableItemExporter):
    """One table as Parquet (ParquetTableWriter); PARQUET_ROW_GROUP_SIZE rows a row group, PARQUET_COMPRESSION."""

    format_name = "parquet"

    def __init__(self, file: IO[bytes], *, compression: str = "zstd", **kwargs: Any):
        super().__init__(file, **kwargs)
        self.compression = compression

    @classmethod
    def _settings_kwargs(cls, crawler: Crawler) -> dict[str, Any]:
        return {"compression": crawler.settings.get("PARQUET_COMPRESSION", "zstd")}

    def _open_writer(self) -> TableWriter:
        return ParquetTableWriter(self.file, self.table, self.compression)


class CsvItemExporter(TableItemExporter):
    """One table as CSV (CsvTableWriter), in the CSV_DIALECT dialect."""

    format_name = "csv"

    def __init__(self, file: IO[bytes], *, dialect: str = "standard", **kwargs: Any):
        super().__init__(file, **kwargs)
        self.dialect = dialect

    @classmethod
    def _settings_kwargs(cls, crawler: Crawler) -> dict[str, Any]:
        return {"dialect": crawler.settings.get("CSV_DIALECT") or "standard"}

    def _open_writer(self) -> TableWriter:
        # -o appends to an existing file: its header (and the excel dialect's BOM) is already there.
        return CsvTableWriter(self.file, self.table, include_header=not _position(self.file), dialect=self.dialect)


def _position(file: IO[bytes]) -> int:
    """Where writing starts in ``file`` (0 for a new file, or one that cannot tell)."""
    try:
        return file.tell()
    except (OSError, ValueError, AttributeError):
        return 0
