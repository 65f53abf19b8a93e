"""Item pipelines: validate, normalise, deduplicate and stamp the run on spider items before export."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DropItem

from exporters.layout import new_run_id
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
_NORMALIZED_FIELDS += ("seller_nick", "is_tmall", "seed_id", "page", "position", "cat", "crawled_at", "is_duplicate", "first_seed_id", "run_id")
assert set(_NORMALIZED_FIELDS) <= set(ProductHit.fields), "pipelines write a field ProductHit does not declare"


class DeduplicatePipeline(_StatsPipeline):
    """Marks repeated products: the first hit of a num_iid wins, later hits get ``is_duplicate=True``.

    Duplicates are not dropped: the matches table keeps every (seed, product) pair, the products
    table only first hits. ``first_seed_id`` is the seed of the first hit. Memory: one int per
    distinct product. Stats: ``dataset/products/unique``, ``dataset/products/duplicates``
    (published every 1,000 hits and when the spider closes).
    """

    def __init__(self, stats: StatsCollector) -> None:
        super().__init__(stats)
        self.seen: set[int] = set()
        self.duplicates = 0
        self._hits = 0

    def process_item(self, item: Any) -> Any:
        if item_kind(item) is not ProductHit:
            return item
        values = item._values  # hot path, see NormalizePipeline._product
        num_iid = values["num_iid"]
        if num_iid in self.seen:
            values["is_duplicate"] = True
            self.duplicates += 1
        else:
            self.seen.add(num_iid)
            values["is_duplicate"] = False
            values["first_seed_id"] = values.get("seed_id")
        self._hits += 1
        if self._hits % _PUBLISH_EVERY == 0:  # stats calls cost more than the rest of this method
            self._publish()
        return item

    def close_spider(self) -> None:
        self._publish()

    def _publish(self) -> None:
        self.stats.set_value("dataset/products/unique", len(self.seen))
        self.stats.set_value("dataset/products/duplicates", self.duplicates)
