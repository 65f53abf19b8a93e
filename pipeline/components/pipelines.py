"""Item pipelines: validate and normalise spider items, and stamp the run on them, before they are staged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DropItem

from exporters.layout import new_run_id
from items.scrapy_items import ProductHit, SeedSummary, item_kind
from pipeline.components.datasetrun import DatasetRun
from pipeline.normalize import (
    SALES_KIND_NAMES,
    clean_title,
    normalize_bool,
    normalize_count,
    normalize_float,
    normalize_num_iid,
    normalize_price,
    normalize_sales,
    normalize_text,
    normalize_timestamp,
    normalize_url,
    sales_kind,
    split_price,
)

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

# process_item is a coroutine (Scrapy 2.14+): Scrapy awaits it directly, where a plain method's result
# is first checked for a Deferred and an awaitable and then wrapped in one.

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

    async def process_item(self, item: Any) -> Any:
        kind = item_kind(item)
        if kind is None:
            return item
        if normalize_text(item.get("seed_id")) is None:
            self.stats.inc_value("dataset/dropped/missing_seed_id")
            raise DropItem(f"{type(item).__name__} without a seed_id", log_level=_DROP_LOG_LEVEL)
        if kind is ProductHit:
            self.check_product(item)
        return item

    def check_product(self, hit: MutableMapping[str, Any]) -> None:
        """``hit``'s num_iid normalised in place; DropItem (counted) when it has no usable one. ``hit`` is a
        ProductHit or a plain dict of its fields (the search service validates dicts, 20 a search)."""
        num_iid = normalize_num_iid(hit.get("num_iid"))
        if num_iid is None:
            self.stats.inc_value("dataset/dropped/invalid_num_iid")
            raise DropItem(f"no usable num_iid: {hit.get('num_iid')!r}", log_level=_DROP_LOG_LEVEL)
        hit["num_iid"] = num_iid


def _raw_text(raw: Any) -> str | None:
    """The value exactly as the gateway sent it, as text: strings verbatim ("" and "  " too), numbers printed."""
    if isinstance(raw, str):
        return raw
    return normalize_text(raw)


class NormalizePipeline(_StatsPipeline):
    """Turns the gateway's raw values into the table columns' types (see items.schema), and stamps the run.

    ProductHit: price -> price_min/price_max (+ price_raw), sales -> int (+ sales_raw), cleaned
    title, https URLs, boolean is_tmall, int ids and positions, UTC crawled_at. An unparseable
    price or sales value becomes null and keeps its raw text; counted in ``dataset/unparsed/price``
    and ``dataset/unparsed/sales``. SeedSummary: counts to ints, codes and messages to text.
    Both get ``run_id``: DATASET_RUN_ID, which DatasetAddon resolves before anything opens (the
    id is in the run's file names too); without the add-on, one generated for this crawl. And
    ``run_started_at``: when the run started (the DatasetRun extension's; a resumed run keeps its
    first start), else when this crawl did.
    """

    def __init__(self, stats: StatsCollector, run_id: str, run_started_at: datetime | None = None) -> None:
        super().__init__(stats)
        self.run_id = run_id
        self.run_started_at = run_started_at or datetime.now(UTC)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        run_id = crawler.settings.get("DATASET_RUN_ID")
        if not run_id:
            run_id = new_run_id()
            logger.warning("DATASET_RUN_ID unset and DatasetAddon not enabled: items get run id %s", run_id)
        run = crawler.get_extension(DatasetRun)
        return cls(crawler.stats, run_id, run.run.started_at if run is not None else None)

    async def process_item(self, item: Any) -> Any:
        kind = item_kind(item)
        if kind is ProductHit:
            self.normalize_product(item)
        elif kind is SeedSummary:
            self._seed(item)
        return item

    def normalize_product(self, item: MutableMapping[str, Any]) -> None:
        """A hit's columns, in place: ``item`` is a ProductHit or a plain dict of its fields (the search
        service normalises dicts: Items and the awaits of process_item cost it 0.3 ms a page of 20 hits)."""
        get = item.get
        price, sales = get("price"), get("sales")
        price_raw, sales_raw = _raw_text(price), _raw_text(sales)
        price_min, price_max, coupon_price = split_price(price)
        sales_count = normalize_sales(sales)
        if price_min is None and coupon_price is None and price_raw and price_raw.strip():
            self.stats.inc_value("dataset/unparsed/price")
        if sales_count is None and sales_raw and sales_raw.strip():
            self.stats.inc_value("dataset/unparsed/sales")
        item["price_min"], item["price_max"], item["price_raw"] = price_min, price_max, price_raw
        if (given := get("coupon_price")) is not None:  # the gateway's own (aliyun's PriceAfterCoupon)
            coupon_price = normalize_price(given)[0]
        given_kind = get("sales_kind")  # a gateway's own word (aliyun's monthly), if it is one of ours
        kind = given_kind if given_kind in SALES_KIND_NAMES and sales_count is not None else sales_kind(sales)
        item["coupon_price"], item["sales_kind"] = coupon_price, kind
        item["score"] = normalize_float(get("score"))
        promotion = get("promotion_price")
        item["promotion_price"] = None if promotion is None else normalize_price(promotion)[0]
        item["sales"], item["sales_raw"] = sales_count, sales_raw
        item["num_iid"] = normalize_num_iid(get("num_iid"))
        item["title"] = clean_title(get("title"))
        item["pic_url"] = normalize_url(get("pic_url"))
        item["detail_url"] = normalize_url(get("detail_url"))
        item["seller_nick"] = normalize_text(get("seller_nick"))
        item["is_tmall"] = normalize_bool(get("is_tmall"))
        item["seed_id"] = normalize_text(get("seed_id"))
        item["page"] = normalize_count(get("page"))
        item["position"] = normalize_count(get("position"))
        item["cat"] = normalize_text(get("cat"))
        item["crawled_at"] = normalize_timestamp(get("crawled_at"))
        item["run_id"], item["run_started_at"] = self.run_id, self.run_started_at

    def _seed(self, item: SeedSummary) -> None:
        for name in ("seed_id", "source", "sha256", "status", "error_code", "error_msg"):
            item[name] = normalize_text(item.get(name))
        for name in ("total_results", "pages_fetched", "items_found"):
            item[name] = normalize_count(item.get(name))
        item["run_id"], item["run_started_at"] = self.run_id, self.run_started_at
