"""Item pipelines: validate, normalise, deduplicate and stamp the run on spider items before export."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DropItem

from exporters.layout import new_run_id
from items.scrapy_items import ProductHit, SeedSummary
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
        if not isinstance(item, (ProductHit, SeedSummary)):
            return item
        if normalize_text(item.get("seed_id")) is None:
            self.stats.inc_value("dataset/dropped/missing_seed_id")
            raise DropItem(f"{type(item).__name__} without a seed_id", log_level=_DROP_LOG_LEVEL)
        if isinstance(item, ProductHit):
            num_iid = normalize_num_iid(item.get("num_iid"))
            if num_iid is None:
                self.stats.inc_value("dataset/dropped/invalid_num_iid")
                raise DropItem(f"no usable num_iid: {item.get('num_iid')!r}", log_level=_DROP_LOG_LEVEL)
            item["num_iid"] = num_iid
        return item


def _raw_text(raw: Any) -> str | None:
    """The value as the gateway sent it, as text: strings verbatim, numbers printed, empty -> None."""
    if isinstance(raw, str):
        return raw or None
    return normalize_text(raw)


class NormalizePipeline(_StatsPipeline):
    """Turns the gateway's raw values into the table columns' types (see items.schema).

    ProductHit: price -> price_min/price_max (+ price_raw), sales -> int (+ sales_raw), cleaned
    title, https URLs, boolean is_tmall, int ids and positions, UTC crawled_at. An unparseable
    price or sales value becomes null and keeps its raw text; counted in ``dataset/unparsed/price``
    and ``dataset/unparsed/sales``. SeedSummary: counts to ints, codes and messages to text.
    """

    def process_item(self, item: Any) -> Any:
        if isinstance(item, ProductHit):
            self._product(item)
        elif isinstance(item, SeedSummary):
            self._seed(item)
        return item

    def _product(self, item: ProductHit) -> None:
        price_raw = _raw_text(item.get("price"))
        item["price_min"], item["price_max"] = normalize_price(item.get("price"))
        item["price_raw"] = price_raw
        if item["price_min"] is None and price_raw is not None:
            self.stats.inc_value("dataset/unparsed/price")
        sales_raw = _raw_text(item.get("sales"))
        item["sales"] = normalize_sales(item.get("sales"))
        item["sales_raw"] = sales_raw
        if item["sales"] is None and sales_raw is not None:
            self.stats.inc_value("dataset/unparsed/sales")
        item["num_iid"] = normalize_num_iid(item.get("num_iid"))
        item["title"] = clean_title(item.get("title"))
        item["pic_url"] = normalize_url(item.get("pic_url"))
        item["detail_url"] = normalize_url(item.get("detail_url"))
        item["seller_nick"] = normalize_text(item.get("seller_nick"))
        item["is_tmall"] = normalize_bool(item.get("is_tmall"))
        item["seed_id"] = normalize_text(item.get("seed_id"))
        item["page"] = normalize_count(item.get("page"))
        item["position"] = normalize_count(item.get("position"))
        item["cat"] = normalize_text(item.get("cat"))
        item["crawled_at"] = normalize_timestamp(item.get("crawled_at"))

    def _seed(self, item: SeedSummary) -> None:
        for name in ("seed_id", "source", "sha256", "status", "error_code", "error_msg"):
            item[name] = normalize_text(item.get(name))
        for name in ("total_results", "pages_fetched", "items_found"):
            item[name] = normalize_count(item.get(name))


class DeduplicatePipeline(_StatsPipeline):
    """Marks repeated products: the first hit of a num_iid wins, later hits get ``is_duplicate=True``.

    Duplicates are not dropped: the matches table keeps every (seed, product) pair, the products
    table only first hits. ``first_seed_id`` is the seed of the first hit. Memory: one int per
    distinct product. Stats: ``dataset/products/unique``, ``dataset/products/duplicates``.
    """

    def __init__(self, stats: StatsCollector) -> None:
        super().__init__(stats)
        self.seen: set[int] = set()

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, ProductHit):
            return item
        num_iid = item["num_iid"]
        if num_iid in self.seen:
            item["is_duplicate"] = True
            self.stats.inc_value("dataset/products/duplicates")
        else:
            self.seen.add(num_iid)
            item["is_duplicate"] = False
            item["first_seed_id"] = item.get("seed_id")
            self.stats.inc_value("dataset/products/unique")
        return item


class RunIdPipeline:
    """Stamps every item with the crawl's ``run_id`` (DATASET_RUN_ID, resolved by DatasetAddon)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        run_id = crawler.settings.get("DATASET_RUN_ID")
        if not run_id:
            run_id = new_run_id()
            logger.warning("DATASET_RUN_ID unset and DatasetAddon not enabled: items get run id %s", run_id)
        return cls(run_id)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, (ProductHit, SeedSummary)):
            item["run_id"] = self.run_id
        return item
