"""Scrapy item exporters writing one dataset table as typed Parquet or CSV, in bounded memory."""

from __future__ import annotations

import logging
from typing import IO, TYPE_CHECKING, Any, ClassVar, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from scrapy.exporters import BaseItemExporter

from exporters.tables import (
    DEFAULT_TABLE,
    TABLE_ACCEPTS,
    SharedConversion,
    TableConverter,
    get_table,
    shared_conversion,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

    from items.schema import Table

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_ROWS = 10_000


class TableItemExporter(BaseItemExporter):
    """Projects items onto one table's columns, in schema order, and writes them in batches.

    The table comes from the feed option ``item_export_kwargs: {"table": "products"}``; without
    it (``-O out.parquet``) the feed writes ``products`` (DEFAULT_TABLE), and items that do not
    belong to it are skipped and counted. Rows are
    buffered ``buffer_rows`` (PARQUET_ROW_GROUP_SIZE) at a time and converted column by column
    with pyarrow, so memory stays bounded whatever the crawl's size; the exporters of one table
    in both formats share each row and each converted batch (``SharedConversion``), so writing a
    second format costs little more than its own encoding. Subclasses say how a batch is written.
    """

    format_name: ClassVar[str]

    def __init__(
        self,
        file: IO[bytes],
        *,
        table: str | None = None,
        buffer_rows: int = DEFAULT_BUFFER_ROWS,
        stats: StatsCollector | None = None,
        shared: SharedConversion | None = None,
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
        self.rows_written = 0
        # With an explicit table the feed's item_filter routes items; with the default one we filter here.
        self._accepts: Callable[[Any], bool] | None = None
        if not table:
            table = DEFAULT_TABLE
            self._accepts = TABLE_ACCEPTS[table]
            logger.info(
                "%s feed without a table option writes the %s table (FEEDS item_export_kwargs "
                "{'table': ...} picks another)",
                self.format_name,
                table,
            )
        self.table: Table = get_table(table)
        self._converter: TableConverter | SharedConversion | None = shared
        self._rows: list[tuple[Any, ...]] = []
        self._writing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, file: IO[bytes], **kwargs: Any) -> Self:
        kwargs.setdefault("stats", crawler.stats)
        if kwargs.get("table"):
            kwargs.setdefault("shared", shared_conversion(crawler, get_table(kwargs["table"])))
        # One buffer size for every format, so the exporters of a table flush together and share batches.
        options = {"buffer_rows": crawler.settings.getint("PARQUET_ROW_GROUP_SIZE", DEFAULT_BUFFER_ROWS)}
        return cls(file, **{**options, **cls._settings_kwargs(crawler), **kwargs})

    @classmethod
    def _settings_kwargs(cls, crawler: Crawler) -> dict[str, Any]:
        return {}

    def start_exporting(self) -> None:
        if not self._writing:
            self._open(self.table)

    def export_item(self, item: Any) -> None:
        converter = self._converter
        assert converter is not None, "export_item before start_exporting"
        if self._accepts is not None and not self._accepts(item):
            self._count("skipped", 1)
            return
        rows = self._rows
        rows.append(converter.row(item))
        if len(rows) >= self.buffer_rows:
            self._flush()

    def finish_exporting(self) -> None:
        if self._writing:
            self._flush()
            self._close()
            self._writing = False

    def _open(self, table: Table) -> None:
        if self._converter is None:
            self._converter = TableConverter(table)
        self._open_writer(table)
        self._writing = True

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        assert self._converter is not None
        batch, rejected = self._converter.to_batch(rows)
        if rejected:
            logger.error(
                "%s/%s: %d rows without a required value not written", self.format_name, self.table.name, rejected
            )
            self._count("rejected_rows", rejected)
        if batch.num_rows:
            self._write_batch(batch)
            self.rows_written += batch.num_rows

    def _count(self, what: str, n: int) -> None:
        if self.stats is not None:
            self.stats.inc_value(f"dataset/export/{what}/{self.format_name}/{self.table.name}", n)

    def _open_writer(self, table: Table) -> None:
        raise NotImplementedError

    def _write_batch(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class ParquetItemExporter(TableItemExporter):
    """One table as a Parquet file with the schema of ``items.schema``, one row group per buffer.

    Settings: PARQUET_ROW_GROUP_SIZE (rows per row group, which is also the buffer of every
    dataset exporter, CSV included) and PARQUET_COMPRESSION.
    """

    format_name = "parquet"

    def __init__(self, file: IO[bytes], *, compression: str = "zstd", **kwargs: Any):
        super().__init__(file, **kwargs)
        self.compression = compression
        self._writer: pq.ParquetWriter | None = None

    @classmethod
    def _settings_kwargs(cls, crawler: Crawler) -> dict[str, Any]:
        return {"compression": crawler.settings.get("PARQUET_COMPRESSION", "zstd")}

    def _open_writer(self, table: Table) -> None:
        # pyarrow takes any codec name and a list of columns to dictionary-encode; pyarrow-stubs
        # declare only literal codec names and a bool.
        self._writer = pq.ParquetWriter(
            self.file, table.arrow_schema,
            compression=self.compression,  # type: ignore[arg-type]
            use_dictionary=table.dictionary_columns,  # type: ignore[arg-type]
        )

    def _write_batch(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None
        self._writer.write_batch(batch, row_group_size=batch.num_rows)

    def _close(self) -> None:
        assert self._writer is not None
        self._writer.close()  # writes the footer; the feed storage closes the file


class CsvItemExporter(TableItemExporter):
    """One table as CSV for BI tools: UTF-8 (no BOM), a header of schema column names, same order as Parquet.

    Nulls are empty fields; decimals plain text with their scale ("39.50"); booleans
    ``true``/``false``; timestamps ISO 8601 UTC (``2026-11-25T10:15:00.123456Z``). Fields are
    quoted only when needed. Rows are formatted by Arrow's CSV writer from the same typed batches
    as Parquet, so both formats hold the same values.
    """

    format_name = "csv"

    def __init__(self, file: IO[bytes], **kwargs: Any):
        super().__init__(file, **kwargs)
        self._writer: pa_csv.CSVWriter | None = None
        self._timestamps: list[int] = []
        self._csv_schema: pa.Schema | None = None

    def _open_writer(self, table: Table) -> None:
        schema = table.arrow_schema
        self._timestamps = [i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)]
        for i in self._timestamps:
            schema = schema.set(i, schema.field(i).with_type(pa.string()))
        self._csv_schema = schema
        # -o appends to an existing file: its header is already there.
        options = pa_csv.WriteOptions(include_header=not _position(self.file), quoting_style="needed")
        self._writer = pa_csv.CSVWriter(self.file, schema, write_options=options)

    def _write_batch(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None
        if self._timestamps:
            # Arrow prints "2026-11-25 10:15:00.123456Z"; ISO 8601 wants the T. %S includes the microseconds.
            # strftime costs 1 us a value: each distinct time (one per result page) is formatted once.
            arrays = list(batch.columns)
            for i in self._timestamps:
                encoded = arrays[i].dictionary_encode()
                times = cast("pa.TimestampArray", encoded.dictionary)
                arrays[i] = pc.strftime(times, format="%Y-%m-%dT%H:%M:%SZ").take(encoded.indices)
            batch = pa.RecordBatch.from_arrays(arrays, schema=self._csv_schema)
        self._writer.write_batch(batch)

    def _close(self) -> None:
        assert self._writer is not None
        self._writer.close()


def _position(file: IO[bytes]) -> int:
    """Where writing starts in ``file`` (0 for a new file, or one that cannot tell)."""
    try:
        return file.tell()
    except (OSError, ValueError, AttributeError):
        return 0
