"""Item pipelines: validate, normalise, deduplicate and stamp the run on spider items before export."""

from __future__ import annotations

import logging
import marshal
import pickle
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

# process_item is a coroutine (Scrapy 2.14+): Scrapy awaits it directly, where a plain method's result
# is first checked for a Deferred and an awaitable and then wrapped in one, 1.1 against 0.6 us a
# pipeline and item. None of them awaits anything: each item goes through all three at once.

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

    async def process_item(self, item: Any) -> Any:
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

    async def process_item(self, item: Any) -> Any:
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
        promotion = get("promotion_price")
        values["promotion_price"] = None if promotion is None else normalize_price(promotion)[0]
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


_NORMALIZED_FIELDS: tuple[str, ...] = (
    "price_min", "price_max", "price_raw", "promotion_price", "sales", "sales_raw", "num_iid", "title", "pic_url",
    "detail_url", "seller_nick", "is_tmall", "seed_id", "page", "position", "cat", "crawled_at", "is_duplicate",
    "first_seed_id", "run_id", "seed_rank", "product_row",
)
assert set(_NORMALIZED_FIELDS) <= set(ProductHit.fields), "pipelines write a field ProductHit does not declare"


class DeduplicatePipeline(_StatsPipeline):
    """One products row per num_iid: the hit of the first seed (in the order the seeds were given) wins.

    Hits are not dropped: the matches table keeps every (seed, product) pair. When a feed writes
    the products table (the default dataset layout), hits pass with ``is_duplicate=True`` and the
    best hit per num_iid (lowest ``seed_rank``, then ``position``) is held back until it cannot be
    beaten: once the SeedSummary of its seed and of every earlier seed has passed, no better hit
    can come, and its products row is emitted then, straight to the feed exporter. The same seeds
    thus give the same products rows whatever order the answers arrive in, a crawl resumed from
    JOBDIR included. Held rows wait in memory while the seeds before them are still being searched
    (a few hundred with CONCURRENT_REQUESTS 8); past ``HOLD_ROWS`` of them (a seed that waits a
    long time for its quota) they move to an on-disk store, and from then on the rows not yet
    emitted are emitted when the crawl closes, ordered by num_iid, as are rows whose seeds never
    got a summary (a stopped crawl). Memory stays flat as a crawl grows: the num_iids already out
    are kept in about 8 bytes each (``IdSet``).

    A feed writes products when it says so, or is a Parquet/CSV feed without a table
    (``-O out.parquet``: see ``exporters.tables.feed_table``). Without such a feed
    (``-O hits.jsonl``) the first hit to arrive is marked ``is_duplicate=False``. Emitted rows carry
    ``product_row=True``: they are products, not hits, so the matches table skips them.
    ``first_seed_id`` is the winning hit's seed. Stats: ``dataset/products/unique``,
    ``dataset/products/duplicates`` (published every 1,000 hits and when the spider closes),
    ``dataset/products/held_on_disk`` (rows moved to the on-disk store when HOLD_ROWS was passed),
    ``dataset/products/late_hits`` (hits that came after their seed's summary: never from the
    imagesearch spider; such a hit cannot change a row already emitted).
    """

    #: Most products rows held in memory for earlier seeds before they go to the on-disk store.
    HOLD_ROWS = 10_000

    def __init__(self, stats: StatsCollector, crawler: Crawler | None = None, deferred: bool = False) -> None:
        super().__init__(stats)
        self.crawler = crawler
        self._deferred = deferred
        self._hits = 0
        self._late = 0
        # num_iids whose products row is out (deferred), or that have had their first hit (not deferred).
        self._done = IdSet()
        # Rows held for earlier seeds: {seed_rank: {num_iid: a copy of the hit's values}}, and their ranks.
        self._held: dict[int, dict[int, dict[str, Any]]] = {}
        self._held_rank: dict[int, tuple[int, int]] = {}
        # Every seed ranked below this one is summarised, and its rows emitted.
        self._watermark = 0
        self._summarised: set[int] = set()
        self._store: _WinnerStore | None = None  # once rows are held on disk
        self._deliver: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        feeds = crawler.settings.getdict("FEEDS").values()
        deferred = any(feed_table(crawler.settings, f) == PRODUCTS.name for f in feeds)
        return cls(crawler.stats, crawler, deferred)

    async def process_item(self, item: Any) -> Any:
        kind = item_kind(item)
        if kind is not ProductHit:
            if kind is SeedSummary and self._deferred:
                self._seed_done(item._values.get("seed_rank"))
            return item
        values = item._values  # hot path, see NormalizePipeline._product
        num_iid = values["num_iid"]
        if self._deferred:
            values["is_duplicate"] = True  # its products row, if it wins, is emitted on its own
            rank = (values.get("seed_rank") or 0, values.get("position") or 0)
            if rank[0] < self._watermark:
                self._late += 1
            held = self._held_rank.get(num_iid)
            if held is not None:
                if rank < held:
                    del self._held[held[0]][num_iid]
                    self._hold(num_iid, rank, values.copy())
            elif num_iid in self._done:
                pass  # its row is out, from a seed summarised before this hit's
            elif self._store is not None:
                self._store.put(num_iid, rank, values)
            else:
                self._hold(num_iid, rank, values.copy())
        elif num_iid in self._done:
            values["is_duplicate"] = True
        else:
            self._done.add(num_iid)
            values["is_duplicate"] = False
            values["first_seed_id"] = values.get("seed_id")
        self._hits += 1
        if self._hits % _PUBLISH_EVERY == 0:  # stats calls cost more than the rest of this method
            self._publish()
        return item

    def _hold(self, num_iid: int, rank: tuple[int, int], values: dict[str, Any]) -> None:
        """Keep a hit's values as num_iid's best so far, until its seed and every earlier one are summarised."""
        if rank[0] < self._watermark:  # its seed is summarised already (a late hit): nothing can beat it now
            self._held_rank.pop(num_iid, None)
            self._emit([(num_iid, values)])
            return
        self._held_rank[num_iid] = rank
        self._held.setdefault(rank[0], {})[num_iid] = values
        if len(self._held_rank) > self.HOLD_ROWS:
            self._hold_on_disk()

    def _seed_done(self, seed_rank: Any) -> None:
        """A seed is summarised: emit the rows of every seed now summarised along with all before it."""
        if not isinstance(seed_rank, int) or seed_rank < self._watermark or self._store is not None:
            return  # once rows are on disk, the rows not emitted yet wait for the close
        self._summarised.add(seed_rank)
        while self._watermark in self._summarised:
            self._summarised.discard(self._watermark)
            held = self._held.pop(self._watermark, None)
            self._watermark += 1
            if held:
                for num_iid in held:
                    del self._held_rank[num_iid]
                self._emit(sorted(held.items()))

    def _hold_on_disk(self) -> None:
        store = self._store = _WinnerStore()
        logger.info(
            "More than %d products rows wait for earlier seeds: they and later ones wait on disk until the crawl ends",
            self.HOLD_ROWS,
        )
        for held in self._held.values():
            for num_iid, values in held.items():
                store.put(num_iid, self._held_rank[num_iid], values)
        self.stats.inc_value("dataset/products/held_on_disk", len(self._held_rank))
        self._held.clear()
        self._held_rank.clear()

    def _emit(self, rows: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Products rows, now final, to the feeds: the values of each num_iid's winning hit.

        They go straight to the feed exporter, the one receiver of these rows: dispatching the
        item_scraped signal per row cost more than writing it (bench/bench_export.py)."""
        deliver = self._deliver
        if deliver is None:
            deliver = self._deliver = self._deliverer()
        spider = self.crawler.spider if self.crawler is not None else None
        done = self._done
        for num_iid, row in rows:
            done.add(num_iid)
            item = ProductHit()
            values = item._values  # every key a declared field: a hit's own, or see _WINNER_FIELDS
            values.update(row)
            values.update(is_duplicate=False, product_row=True, first_seed_id=values["seed_id"])
            deliver(item, spider)

    def _deliverer(self) -> Any:
        crawler = self.crawler
        if crawler is None:
            return lambda item, spider: None
        feeds = crawler.get_extension(FeedExporter)
        if feeds is not None:
            return feeds.item_scraped

        def deliver(item: ProductHit, spider: Any) -> None:
            crawler.signals.send_catch_log(signals.item_scraped, item=item, response=None, spider=spider)

        return deliver

    def close_spider(self) -> None:
        # Item pipelines close before the feed exporter's slots do: the rows still reach the files.
        # Rows still held belong to seeds without a summary, or after one (a stopped crawl).
        for seed_rank in sorted(self._held):
            self._emit(sorted(self._held[seed_rank].items()))
        self._held.clear()
        self._held_rank.clear()
        store, self._store = self._store, None
        if store is not None:
            self._emit(store.winners())
            store.close()
        self._publish()

    def _publish(self) -> None:
        unique = len(self._done) + len(self._held_rank) + (self._store.rows if self._store is not None else 0)
        self.stats.set_value("dataset/products/unique", unique)
        self.stats.set_value("dataset/products/duplicates", self._hits - unique)
        if self._late:
            self.stats.set_value("dataset/products/late_hits", self._late)


class IdSet:
    """A set of int64 ids in about 8 bytes each, so that deduplicating a long crawl keeps memory flat.

    A Python set (or dict) costs 60-150 bytes an id. The newest ids (up to ``RECENT``) are in a
    Python set; the rest in one sorted numpy array, merged into it in bulk. A 1 MB bitmap of the
    ids' low bits answers most misses (a new num_iid: most hits) without the array's binary search
    (0.15 us instead of 0.6-2 us). ``add`` takes only ids not in the set.
    """

    RECENT = 65_536
    _BITS = 1 << 23

    def __init__(self) -> None:
        self._recent: set[int] = set()
        self._sorted = np.empty(0, dtype=np.int64)
        self._bitmap = bytearray(self._BITS >> 3)

    def __contains__(self, key: int) -> bool:
        bit = key & (self._BITS - 1)
        if not self._bitmap[bit >> 3] & (1 << (bit & 7)):
            return False
        if key in self._recent:
            return True
        ids = self._sorted
        i = ids.searchsorted(key)
        return bool(i < len(ids) and ids[i] == key)

    def add(self, key: int) -> None:
        bit = key & (self._BITS - 1)
        self._bitmap[bit >> 3] |= 1 << (bit & 7)
        recent = self._recent
        recent.add(key)
        if len(recent) >= self.RECENT:
            merged = np.concatenate((self._sorted, np.fromiter(recent, dtype=np.int64, count=len(recent))))
            merged.sort()
            self._sorted = merged
            recent.clear()

    def __len__(self) -> int:
        return len(self._recent) + len(self._sorted)


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
    return value.isoformat() if isinstance(value, datetime) else str(value)


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
    """The best row put per num_iid (lowest rank), in a temporary SQLite file: memory stays flat.

    Rows gather in memory until ``_FLUSH_ROWS`` of them (a num_iid put again keeps its better
    row), then go in one transaction, SQLite keeping the better of the stored and the new row.
    One INSERT per row, each its own transaction, cost 70 us a row (bench/bench_export.py).
    """

    _FLUSH_ROWS = 4096

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="imagesearch-products-")
        self._db = sqlite3.connect(Path(self._dir.name) / "winners.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE winner (num_iid INTEGER PRIMARY KEY, seed_rank INTEGER NOT NULL, "
            "position INTEGER NOT NULL, hit BLOB NOT NULL)"
        )
        self._pending: dict[int, tuple[tuple[int, int], tuple[Any, ...]]] = {}
        #: Rows stored (flushed) so far, one per num_iid.
        self.rows = 0

    def put(self, num_iid: int, rank: tuple[int, int], values: dict[str, Any]) -> None:
        """Keep the products columns of a hit's *values* if *rank* beats the row num_iid has."""
        pending = self._pending.get(num_iid)
        if pending is None or rank < pending[0]:
            self._pending[num_iid] = (rank, tuple(map(values.get, _WINNER_FIELDS)))
            if len(self._pending) >= self._FLUSH_ROWS:
                self._flush()

    def _flush(self) -> None:
        rows = [(num_iid, rank[0], rank[1], _encode_row(row)) for num_iid, (rank, row) in self._pending.items()]
        self._pending.clear()
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO winner VALUES (?, ?, ?, ?) ON CONFLICT (num_iid)"
                " DO UPDATE SET seed_rank = excluded.seed_rank, position = excluded.position, hit = excluded.hit"
                " WHERE (excluded.seed_rank, excluded.position) < (winner.seed_rank, winner.position)",
                rows,
            )
        (self.rows,) = self._db.execute("SELECT count(*) FROM winner").fetchone()

    def winners(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every num_iid and its best row's values, in num_iid order."""
        self._flush()
        for num_iid, blob in self._db.execute("SELECT num_iid, hit FROM winner ORDER BY num_iid"):
            yield num_iid, dict(zip(_WINNER_FIELDS, _decode_row(blob), strict=True))

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()
