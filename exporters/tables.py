"""Items to table rows: which items belong to which table, and rows buffered into typed Arrow batches."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from weakref import WeakKeyDictionary

import pyarrow as pa
import pyarrow.compute as pc
from itemadapter import ItemAdapter
from scrapy.extensions.feedexport import ItemFilter

from items.schema import MATCHES, PRODUCTS, SEEDS, TABLES, Table
from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.normalize import (
    normalize_bool,
    normalize_count,
    normalize_price,
    normalize_text,
    normalize_timestamp,
)

logger = logging.getLogger(__name__)

try:
    # pyarrow imports pandas the first time pa.array() runs, to ask whether a value is a pandas
    # object: about 0.4 s, which would otherwise land in the middle of the crawl's first batch.
    # Paid here, with the other imports, before the crawl starts.
    import pandas  # noqa: F401
except ImportError:  # pragma: no cover - pyarrow works without pandas
    pass

#: Which items each table takes: a product once (its first hit), a match for every hit.
#: Every feed asks this of every item: the exact type is checked before item_kind(), which costs a call.
TABLE_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    PRODUCTS.name: lambda item: (
        (type(item) is ProductHit or item_kind(item) is ProductHit) and not item._values.get("is_duplicate")
    ),
    MATCHES.name: lambda item: (
        (type(item) is ProductHit or item_kind(item) is ProductHit) and not item._values.get("product_row")
    ),
    SEEDS.name: lambda item: type(item) is SeedSummary or item_kind(item) is SeedSummary,
}
#: The table of a Parquet or CSV feed that names none (``scrapy crawl ... -O out.parquet``): the listings.
DEFAULT_TABLE = PRODUCTS.name


def get_table(name: str) -> Table:
    """The table called *name*, or a ValueError naming the tables there are."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; tables: {', '.join(TABLES)}") from None


class TableFilter(ItemFilter):
    """FEEDS ``item_filter`` that passes the items of the feed's table (``item_export_kwargs.table``)."""

    def __init__(self, feed_options: dict[str, Any] | None) -> None:
        super().__init__(feed_options)
        table = ((feed_options or {}).get("item_export_kwargs") or {}).get("table")
        if table is None:
            raise ValueError("TableFilter needs the feed option item_export_kwargs: {'table': ...}")
        # Scrapy calls filter.accepts(item) for every item and feed: the predicate itself, no wrapper.
        self.accepts = TABLE_ACCEPTS[get_table(table).name]  # type: ignore[method-assign,assignment]


def _coerce_int(bits: int) -> Callable[[Any], int | None]:
    high = 2 ** (bits - 1) - 1

    def coerce(value: Any) -> int | None:
        number = normalize_count(value)
        return number if number is not None and number <= high else None

    return coerce


def _coercer(type_: pa.DataType) -> Callable[[Any], Any]:
    """Turns one stray value into *type_*'s Python type, or None: the slow path for unnormalised items."""
    if pa.types.is_integer(type_):
        return _coerce_int(type_.bit_width)
    if pa.types.is_decimal(type_):
        return lambda value: normalize_price(value)[0]
    if pa.types.is_boolean(type_):
        return normalize_bool
    if pa.types.is_timestamp(type_):
        return normalize_timestamp
    return normalize_text


def to_arrow(values: list[Any] | tuple[Any, ...], type_: pa.DataType) -> pa.Array[Any]:
    """*values* as an Arrow array of *type_*: in one C call when the pipelines normalised them, else per value."""
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        coerce = _coercer(type_)
        return pa.array([coerce(v) for v in values], type=type_)


class TableConverter:
    """Turns rows of one table (tuples in schema order) into a typed Arrow record batch."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.schema = table.arrow_schema
        self.names = tuple(table.column_names)
        self._required = [i for i, c in enumerate(table.columns) if not c.nullable]
        self._row_type = pa.struct([pa.field(c.name, c.type) for c in table.columns])

    def row(self, item: Any) -> tuple[Any, ...]:
        """The item's values for this table's columns, in order (missing fields are None)."""
        try:
            get = item._values.get  # a scrapy.Item: its own dict, without the adapter's per-key work
        except AttributeError:
            get = ItemAdapter(item).get
        return tuple(map(get, self.names))

    def to_batch(self, rows: list[tuple[Any, ...]]) -> tuple[pa.RecordBatch, int]:
        """*rows* as a record batch, and how many rows were rejected.

        A row missing a required (non-nullable) value is rejected rather than written: the
        validation pipeline should have dropped it, and a null there would break readers.
        """
        try:
            # The rows in one C call, when the pipelines normalised them: 1.2 against 1.5 us a
            # products row for transposing them in Python first and converting column by column.
            arrays = cast("pa.StructArray", pa.array(rows, type=self._row_type)).flatten() if rows else None
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            arrays = None
        if arrays is None:
            columns = list(zip(*rows, strict=True)) if rows else [()] * len(self.names)
            arrays = [to_arrow(values, column.type) for values, column in zip(columns, self.table.columns, strict=True)]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        rejected = 0
        if self._required and any(arrays[i].null_count for i in self._required):
            mask = arrays[self._required[0]].is_valid()
            for i in self._required[1:]:
                mask = pc.and_(mask, arrays[i].is_valid())
            batch = batch.filter(mask)
            rejected = len(rows) - batch.num_rows
        return batch, rejected


@dataclass
class _Converted:
    first: tuple[Any, ...]  # held, so identity comparisons cannot meet a recycled id
    last: tuple[Any, ...]
    size: int
    result: tuple[pa.RecordBatch, int]
    waiting: int


class SharedConversion:
    """Lets the exporters of one table in several formats build each row and each batch once.

    The feeds of one table (``parquet/products``, ``csv/products``) receive the same items in
    the same order, one right after the other. The first exporter to see an item builds its row
    tuple and the next ones reuse that very tuple; the first to flush a buffer converts it and
    the others, holding the same tuples, reuse the batch. Nothing is shared unless the rows are
    the identical objects, so feeds that see different items simply convert their own.
    """

    def __init__(self, converter: TableConverter, consumers: int) -> None:
        self.converter = converter
        self.consumers = consumers
        self._names = converter.names
        self._last_item: Any = None
        self._last_row: tuple[Any, ...] = ()
        self._converted: deque[_Converted] = deque(maxlen=8)

    def row(self, item: Any) -> tuple[Any, ...]:
        if item is self._last_item:
            return self._last_row
        try:
            row = tuple(map(item._values.get, self._names))  # TableConverter.row, inlined: this runs per item
        except AttributeError:
            row = self.converter.row(item)
        self._last_item, self._last_row = item, row
        return row

    def to_batch(self, rows: list[tuple[Any, ...]]) -> tuple[pa.RecordBatch, int]:
        for done in self._converted:
            if done.size == len(rows) and done.first is rows[0] and done.last is rows[-1]:
                done.waiting -= 1
                if not done.waiting:
                    self._converted.remove(done)
                return done.result
        result = self.converter.to_batch(rows)
        if self.consumers > 1 and rows:
            self._converted.append(_Converted(rows[0], rows[-1], len(rows), result, self.consumers - 1))
        return result


_SHARED: WeakKeyDictionary[Any, dict[str, SharedConversion]] = WeakKeyDictionary()


def shared_conversion(crawler: Any, table: Table) -> SharedConversion:
    """The crawler's SharedConversion for *table*, sized by how many FEEDS write that table."""
    per_table = _SHARED.setdefault(crawler, {})
    if table.name not in per_table:
        feeds = crawler.settings.getdict("FEEDS").values()
        consumers = sum(1 for f in feeds if ((f or {}).get("item_export_kwargs") or {}).get("table") == table.name)
        per_table[table.name] = SharedConversion(TableConverter(table), max(consumers, 1))
    return per_table[table.name]


def feed_table(settings: Any, feed_options: dict[str, Any] | None) -> str | None:
    """The table a feed writes: its ``item_export_kwargs`` table, DEFAULT_TABLE for a Parquet or CSV
    feed of ours without one, None for any other exporter (``-O hits.jsonl``)."""
    from scrapy.utils.misc import load_object

    from exporters.itemexporters import TableItemExporter

    options = feed_options or {}
    table = (options.get("item_export_kwargs") or {}).get("table")
    if table:
        return str(table)
    exporter = settings.getwithbase("FEED_EXPORTERS").get(options.get("format"))
    try:
        exporter_cls = load_object(exporter) if exporter else None
    except (ImportError, AttributeError, ValueError, NameError):
        return None
    return DEFAULT_TABLE if isinstance(exporter_cls, type) and issubclass(exporter_cls, TableItemExporter) else None
