"""Items to table rows: which items belong to which table, and rows turned into typed Arrow batches."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from itemadapter import ItemAdapter
from scrapy.extensions.feedexport import ItemFilter

from items.schema import FEED_TABLES, HITS, MATCHES, SEEDS, Table
from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.normalize import (
    normalize_bool,
    normalize_count,
    normalize_float,
    normalize_price,
    normalize_text,
    normalize_timestamp,
)

try:
    # pyarrow imports pandas the first time pa.array() runs, to ask whether a value is a pandas
    # object: about 0.4 s, which would otherwise land in the middle of the crawl's first batch.
    # Paid here, with the other imports, before the crawl starts.
    import pandas  # noqa: F401
except ImportError:  # pragma: no cover - pyarrow works without pandas
    pass


def _is_hit(item: Any) -> bool:
    return item_kind(item) is ProductHit


def _is_seed(item: Any) -> bool:
    return item_kind(item) is SeedSummary


#: Which items each table takes, as the crawl yields them: every hit is a hits row and a matches row.
TABLE_ACCEPTS: dict[str, Callable[[Any], bool]] = {HITS.name: _is_hit, MATCHES.name: _is_hit, SEEDS.name: _is_seed}
#: The table of a Parquet or CSV feed that names none (``scrapy crawl ... -O out.parquet``).
DEFAULT_TABLE = HITS.name


def get_table(name: str) -> Table:
    """The table a feed may write called *name*, or a ValueError naming the ones there are."""
    if name == "products":
        raise ValueError(
            "the products table is built when a run commits, from all its hits: a feed of your own can write "
            f"{', '.join(FEED_TABLES)} (the dataset layout, without -o/-O, has products)"
        )
    try:
        return FEED_TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; a feed can write {', '.join(FEED_TABLES)}") from None


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
    if pa.types.is_floating(type_):
        return normalize_float
    return _text


def _text(value: Any) -> str | None:
    """normalize_text, with any lone surrogate (``"\\ud83d"`` in an answer's JSON: an emoji cut in two)
    made U+FFFD: UTF-8 has no code for one, so Arrow cannot write it."""
    text = normalize_text(value)
    return text if text is None or text.isascii() else _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


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
        get = item.get if hasattr(item, "get") else ItemAdapter(item).get
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
