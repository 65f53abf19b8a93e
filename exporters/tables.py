"""Items to table rows: which items belong to which table, and rows buffered into typed Arrow batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from itemadapter import ItemAdapter
from scrapy import Item
from scrapy.extensions.feedexport import ItemFilter

from items.schema import MATCHES, PRODUCTS, SEEDS, TABLES, Table
from items.scrapy_items import ProductHit, SeedSummary
from pipeline.normalize import (
    normalize_bool,
    normalize_count,
    normalize_price,
    normalize_text,
    normalize_timestamp,
)

logger = logging.getLogger(__name__)

#: Which items each table takes: a product once (its first hit), a match for every hit.
TABLE_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    PRODUCTS.name: lambda item: isinstance(item, ProductHit) and not item.get("is_duplicate"),
    MATCHES.name: lambda item: isinstance(item, ProductHit),
    SEEDS.name: lambda item: isinstance(item, SeedSummary),
}
#: The table an item goes to when a feed names none (``scrapy crawl ... -O out.parquet``).
DEFAULT_TABLE_FOR_ITEM: dict[type, Table] = {ProductHit: PRODUCTS, SeedSummary: SEEDS}


def get_table(name: str) -> Table:
    """The table called *name*, or a ValueError naming the tables there are."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; tables: {', '.join(TABLES)}") from None


def table_for_item(item: Any) -> Table | None:
    """The table an item of this class fills by default, or None."""
    for cls, table in DEFAULT_TABLE_FOR_ITEM.items():
        if isinstance(item, cls):
            return table
    return None


class TableFilter(ItemFilter):
    """FEEDS ``item_filter`` that passes the items of the feed's table (``item_export_kwargs.table``)."""

    def __init__(self, feed_options: dict[str, Any] | None) -> None:
        super().__init__(feed_options)
        table = ((feed_options or {}).get("item_export_kwargs") or {}).get("table")
        if table is None:
            raise ValueError("TableFilter needs the feed option item_export_kwargs: {'table': ...}")
        self._accepts = TABLE_ACCEPTS[get_table(table).name]

    def accepts(self, item: Any) -> bool:
        return self._accepts(item)


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


def to_arrow(values: list[Any] | tuple[Any, ...], type_: pa.DataType) -> pa.Array:
    """*values* as an Arrow array of *type_*: in one C call when the pipelines normalised them, else per value."""
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        coerce = _coercer(type_)
        return pa.array([coerce(v) for v in values], type=type_)


class RowBuffer:
    """Rows of one table, kept as tuples in schema order until they become one Arrow record batch."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.schema = table.arrow_schema
        self._names = tuple(table.column_names)
        self._required = [i for i, c in enumerate(table.columns) if not c.nullable]
        self._rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, item: Any) -> None:
        values = item._values if isinstance(item, Item) else ItemAdapter(item)  # Item: skip the adapter
        self._rows.append(tuple(map(values.get, self._names)))

    def take_batch(self) -> tuple[pa.RecordBatch, int]:
        """The buffered rows as a record batch (buffer emptied), and how many rows were rejected.

        A row missing a required (non-nullable) value is rejected rather than written: the
        validation pipeline should have dropped it, and a null there would break readers.
        """
        rows, self._rows = self._rows, []
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(self._names)
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
