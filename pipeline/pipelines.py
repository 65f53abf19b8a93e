"""Item pipelines: validate, normalise, deduplicate and stamp the run on spider items before export."""

from __future__ import annotations

import logging
import marshal
import pickle
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from scrapy import signals
from scrapy.exceptions import DropItem
from scrapy.extensions.feedexport import FeedExporter

from exporters.layout import new_run_id
from exporters.tables import feed_table
from items.schema import PRODUCTS
from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.normalize import (
    clean_title,
    normalize_bool,
    normalize_count,
    normalize_num_iid,
    normalize_price,
    normalize_sales,
    normalize_text,
    normalize_timestamp,
    normalize_url,
)

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector
    from typing_extensions import Self

logger = logging.getLogger(__name__)

# Drops are expected (a gateway returns the odd hit without an id) and counted in stats; logging
# each at WARNING, Scrapy's default, would bury real problems. DropItem's log_level lowers it.
_DROP_LOG_LEVEL = "DEBUG"
_PUBLISH_EVERY = 1_000


class _StatsPipeline:
    """Base of the pipelines that only need the crawl's stats."""

    def __init__(self, stats: StatsCollector) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.stats)


class ValidatePipeline(_StatsPipeline):
    """Drops a ProductHit without a usable num_iid, and any item without a seed_id, quietly but counted.

    Stats: ``dataset/dropped/invalid_num_iid``, ``dataset/dropped/missing_seed_id``.
    """

    def process_item(self, item: Any) -> Any:
        kind = item_kind(item)
        if kind is None:
            return item
        values = item._values  # hot path, see NormalizePipeline._product
        if normalize_text(values.get("seed_id")) is None:
            self.stats.inc_value("dataset/dropped/missing_seed_id")
            raise DropItem(f"{type(item).__name__} without a seed_id", log_level=_DROP_LOG_LEVEL)
        if kind is ProductHit:
            num_iid = normalize_num_iid(values.get("num_iid"))
            if num_iid is None:
                self.stats.inc_value("dataset/dropped/invalid_num_iid")
                raise DropItem(f"no usable num_iid: {values.get('num_iid')!r}", log_level=_DROP_LOG_LEVEL)
            values["num_iid"] = num_iid
        return item


def _raw_text(raw: Any) -> str | None:
    """The value as the gateway sent it, as text: strings verbatim, numbers printed, empty -> None."""
    if isinstance(raw, str):
        return raw or None
    return normalize_text(raw)


class NormalizePipeline(_StatsPipeline):
    """Turns the gateway's raw values into the table columns' types (see items.schema), and stamps the run.

    ProductHit: price -> price_min/price_max (+ price_raw), sales -> int (+ sales_raw), cleaned
    title, https URLs, boolean is_tmall, int ids and positions, UTC crawled_at. An unparseable
    price or sales value becomes null and keeps its raw text; counted in ``dataset/unparsed/price``
    and ``dataset/unparsed/sales``. SeedSummary: counts to ints, codes and messages to text.
    Both get ``run_id``: DATASET_RUN_ID, which DatasetAddon resolves before anything opens (the
    id is in the feeds' file names too); without the add-on, one generated for this crawl.
    """

    def __init__(self, stats: StatsCollector, run_id: str) -> None:
        super().__init__(stats)
        self.run_id = run_id

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        run_id = crawler.settings.get("DATASET_RUN_ID")
        if not run_id:
            run_id = new_run_id()
            logger.warning("DATASET_RUN_ID unset and DatasetAddon not enabled: items get run id %s", run_id)
        return cls(crawler.stats, run_id)

    def process_item(self, item: Any) -> Any:
        kind = item_kind(item)
        if kind is ProductHit:
            self._product(item)
        elif kind is SeedSummary:
            self._seed(item)
        return item

    def _product(self, item: ProductHit) -> None:
        # This runs for every hit: read and write the item's own dict (every key below is a declared
        # ProductHit field, checked at import) rather than through Item's per-key checks.
        values = item._values
        get = values.get
        price, sales = get("price"), get("sales")
        price_raw, sales_raw = _raw_text(price), _raw_text(sales)
        price_min, price_max = normalize_price(price)
        sales_count = normalize_sales(sales)
        if price_min is None and price_raw is not None:
            self.stats.inc_value("dataset/unparsed/price")
        if sales_count is None and sales_raw is not None:
            self.stats.inc_value("dataset/unparsed/sales")
        values["price_min"], values["price_max"], values["price_raw"] = price_min, price_max, price_raw
        values["sales"], values["sales_raw"] = sales_count, sales_raw
        values["num_iid"] = normalize_num_iid(get("num_iid"))
        values["title"] = clean_title(get("title"))
        values["pic_url"] = normalize_url(get("pic_url"))
        values["detail_url"] = normalize_url(get("detail_url"))
        values["seller_nick"] = normalize_text(get("seller_nick"))
        values["is_tmall"] = normalize_bool(get("is_tmall"))
        values["seed_id"] = normalize_text(get("seed_id"))
        values["page"] = normalize_count(get("page"))
        values["position"] = normalize_count(get("position"))
        values["cat"] = normalize_text(get("cat"))
        values["crawled_at"] = normalize_timestamp(get("crawled_at"))
        values["run_id"] = self.run_id

    def _seed(self, item: SeedSummary) -> None:
        for name in ("seed_id", "source", "sha256", "status", "error_code", "error_msg"):
            item[name] = normalize_text(item.get(name))
        for name in ("total_results", "pages_fetched", "items_found"):
            item[name] = normalize_count(item.get(name))
        item["run_id"] = self.run_id


_NORMALIZED_FIELDS = ("price_min", "price_max", "price_raw", "sales", "sales_raw", "num_iid", "title", "pic_url", "detail_url")
_NORMALIZED_FIELDS += ("seller_nick", "is_tmall", "seed_id", "page", "position", "cat", "crawled_at", "is_duplicate", "first_seed_id", "run_id", "seed_rank", "product_row")
assert set(_NORMALIZED_FIELDS) <= set(ProductHit.fields), "pipelines write a field ProductHit does not declare"


class DeduplicatePipeline(_StatsPipeline):
    """One products row per num_iid: the hit of the first seed (in the order the seeds were given) wins.

    Hits are not dropped: the matches table keeps every (seed, product) pair. When a feed writes
    the products table (the default dataset layout), the winner of each num_iid is known only
    once every seed is searched, so hits pass with ``is_duplicate=True``, the best hit per num_iid
    is kept in an on-disk store, and the winners are emitted as products rows when the crawl
    closes, ordered by num_iid. The same seeds thus give the same products rows whatever order
    the answers arrive in, a crawl resumed from JOBDIR included. A feed writes products when it
    says so, or is a Parquet/CSV feed without a table (``-O out.parquet``: see
    ``exporters.tables.feed_table``). Without such a feed (``-O hits.jsonl``) the first hit to
    arrive is marked ``is_duplicate=False``. Rows emitted at
    close carry ``product_row=True``: they are products, not hits, so the matches table skips them.
    ``first_seed_id`` is the winning hit's seed. Stats: ``dataset/products/unique``,
    ``dataset/products/duplicates`` (published every 1,000 hits and when the spider closes).
    """

    def __init__(self, stats: StatsCollector, crawler: Crawler | None = None, deferred: bool = False) -> None:
        super().__init__(stats)
        self.crawler = crawler
        self.best: dict[int, tuple[int, int]] = {}
        self.duplicates = 0
        self._hits = 0
        self._store: _WinnerStore | None = _WinnerStore() if deferred else None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        feeds = crawler.settings.getdict("FEEDS").values()
        deferred = any(feed_table(crawler.settings, f) == PRODUCTS.name for f in feeds)
        return cls(crawler.stats, crawler, deferred)

    def process_item(self, item: Any) -> Any:
        if item_kind(item) is not ProductHit:
            return item
        values = item._values  # hot path, see NormalizePipeline._product
        num_iid = values["num_iid"]
        rank = (values.get("seed_rank") or 0, values.get("position") or 0)
        best = self.best.get(num_iid)
        if best is not None:
            self.duplicates += 1
        if self._store is None:
            values["is_duplicate"] = best is not None
            if best is None:
                self.best[num_iid] = rank
                values["first_seed_id"] = values.get("seed_id")
        else:
            values["is_duplicate"] = True  # its products row, if it wins, is emitted at close
            if best is None or rank < best:
                self.best[num_iid] = rank
                self._store.put(num_iid, tuple(map(values.get, _WINNER_FIELDS)))
        self._hits += 1
        if self._hits % _PUBLISH_EVERY == 0:  # stats calls cost more than the rest of this method
            self._publish()
        return item

    def close_spider(self) -> None:
        self._publish()
        store, self._store = self._store, None
        if store is None or self.crawler is None:
            return
        # Item pipelines close before the feed exporter's slots do: the rows still reach the files.
        # They go straight to the feed exporter, the one receiver of these rows: dispatching the
        # item_scraped signal per row cost more than writing it (bench/bench_export.py).
        spider = self.crawler.spider
        feeds = self.crawler.get_extension(FeedExporter)
        if feeds is not None:
            deliver = feeds.item_scraped
        else:
            def deliver(item: ProductHit, spider: Any) -> None:
                self.crawler.signals.send_catch_log(signals.item_scraped, item=item, response=None, spider=spider)
        for row in store.winners():
            item = ProductHit()
            values = item._values  # every key a declared field: see _WINNER_FIELDS
            values.update(zip(_WINNER_FIELDS, row))
            values.update(is_duplicate=False, product_row=True, first_seed_id=values["seed_id"])
            deliver(item, spider)
        store.close()

    def _publish(self) -> None:
        self.stats.set_value("dataset/products/unique", len(self.best))
        self.stats.set_value("dataset/products/duplicates", self.duplicates)


#: What a products row needs of its winning hit (its seed becomes first_seed_id).
_WINNER_FIELDS: tuple[str, ...] = tuple(c for c in PRODUCTS.column_names if c != "first_seed_id") + ("seed_id",)
assert set(_WINNER_FIELDS) <= set(ProductHit.fields), "a products column ProductHit does not declare"


def _columns_of_type(predicate: Any) -> tuple[int, ...]:
    types = {c.name: c.type for c in PRODUCTS.columns}
    return tuple(i for i, name in enumerate(_WINNER_FIELDS) if name in types and predicate(types[name]))


_DECIMAL_COLUMNS = _columns_of_type(pa.types.is_decimal)
_TIMESTAMP_COLUMNS = _columns_of_type(pa.types.is_timestamp)


def _encode_row(row: tuple[Any, ...]) -> bytes:
    """A products row as bytes: marshal, with Decimals and datetimes as text (8x faster than pickle,
    which was the store's main cost); pickle for a row holding any other kind of value."""
    values = list(row)
    try:
        for i in _DECIMAL_COLUMNS:
            if values[i] is not None:
                values[i] = _text_of(values[i], Decimal)
        for i in _TIMESTAMP_COLUMNS:
            if values[i] is not None:
                values[i] = _text_of(values[i], datetime)
        return b"m" + marshal.dumps(tuple(values))
    except (TypeError, ValueError):
        return b"p" + pickle.dumps(row, pickle.HIGHEST_PROTOCOL)


def _text_of(value: Any, kind: type) -> str:
    if type(value) is not kind:
        raise TypeError(type(value).__name__)
    return value.isoformat() if kind is datetime else str(value)


def _decode_row(blob: bytes) -> tuple[Any, ...]:
    if blob[:1] == b"p":
        return tuple(pickle.loads(blob[1:]))
    values = list(marshal.loads(blob[1:]))
    for i in _DECIMAL_COLUMNS:
        if values[i] is not None:
            values[i] = Decimal(values[i])
    for i in _TIMESTAMP_COLUMNS:
        if values[i] is not None:
            values[i] = datetime.fromisoformat(values[i])
    return tuple(values)


class _WinnerStore:
    """The best hit so far per num_iid (its products columns), in a temporary SQLite file.

    Rows are held in memory until ``_FLUSH_ROWS`` have gathered (a num_iid that wins again before
    then replaces its row there), then written in one transaction: one INSERT per hit, each its
    own transaction, cost 70 us a hit (bench/bench_export.py), more than the rest of the pipelines.
    """

    _FLUSH_ROWS = 4096

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="imagesearch-products-")
        self._db = sqlite3.connect(Path(self._dir.name) / "winners.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE winner (num_iid INTEGER PRIMARY KEY, hit BLOB NOT NULL)")
        self._pending: dict[int, tuple[Any, ...]] = {}

    def put(self, num_iid: int, row: tuple[Any, ...]) -> None:
        self._pending[num_iid] = row
        if len(self._pending) >= self._FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        rows = [(num_iid, _encode_row(row)) for num_iid, row in self._pending.items()]
        self._pending.clear()
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO winner VALUES (?, ?)", rows)

    def winners(self) -> Iterator[tuple[Any, ...]]:
        """Every num_iid's best row, in num_iid order."""
        self._flush()
        for (blob,) in self._db.execute("SELECT hit FROM winner ORDER BY num_iid"):
            yield _decode_row(blob)

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()
