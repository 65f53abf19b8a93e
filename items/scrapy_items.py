"""Scrapy items the spider yields; item pipelines turn them into rows of the tables in ``items.schema``."""

from __future__ import annotations

import scrapy


class ProductHit(scrapy.Item):
    """One search hit: the API's fields as returned, plus provenance.

    Item pipelines normalise it into a row of the ``hits`` table (items.schema.HITS); the run
    stages every hit and builds ``products`` (one row per ``num_iid``) and ``matches`` from them.
    """

    # The API's fields, exactly as the gateway returned them.
    title = scrapy.Field()
    pic_url = scrapy.Field()
    price = scrapy.Field()
    #: The promotional price, from gateways that give one (Onebound); TOP has none.
    promotion_price = scrapy.Field()
    sales = scrapy.Field()
    num_iid = scrapy.Field()
    #: How similar the gateway found the product (aliyun's RankScore); the others give none.
    score = scrapy.Field()
    detail_url = scrapy.Field()
    seller_nick = scrapy.Field()
    is_tmall = scrapy.Field()
    # Provenance.
    seed_id = scrapy.Field()
    #: Which photo of the seed (1-based) the search was of.
    view = scrapy.Field()
    page = scrapy.Field()
    position = scrapy.Field()
    #: Index of the seed in the order the seeds were given: the first seed's hit wins the products row.
    seed_rank = scrapy.Field()
    cat = scrapy.Field()
    crawled_at = scrapy.Field()
    # Filled by item pipelines (see items.schema.PRODUCTS).
    #: The main picture's fingerprint (pipeline/components/pictures.py).
    pic_hash = scrapy.Field()
    pic_colour = scrapy.Field()
    price_min = scrapy.Field()
    price_max = scrapy.Field()
    price_raw = scrapy.Field()
    #: Also given by a gateway with its own price after coupon (aliyun's PriceAfterCoupon).
    coupon_price = scrapy.Field()
    sales_kind = scrapy.Field()
    sales_raw = scrapy.Field()
    run_id = scrapy.Field()
    run_started_at = scrapy.Field()


class SeedSummary(scrapy.Item):
    """One per seed the user gave: what happened to it (see items.schema.SEEDS)."""

    seed_id = scrapy.Field()
    view = scrapy.Field()
    source = scrapy.Field()
    sha256 = scrapy.Field()
    status = scrapy.Field()
    error_code = scrapy.Field()
    error_msg = scrapy.Field()
    total_results = scrapy.Field()
    pages_fetched = scrapy.Field()
    items_found = scrapy.Field()
    region = scrapy.Field()
    region_source = scrapy.Field()
    main_region = scrapy.Field()
    run_id = scrapy.Field()
    run_started_at = scrapy.Field()
    #: The seed's place in the order the seeds were given (the seeds table is sorted by it).
    seed_rank = scrapy.Field()


_KIND_BY_TYPE: dict[type, type | None] = {}


def item_kind(item: object) -> type | None:
    """``ProductHit``, ``SeedSummary`` (subclasses included) or None, for any item.

    Pipelines and feed filters ask this of every item several times; ``isinstance`` against
    Item classes goes through ABCMeta and costs more than the rest of a filter, so the answer
    is cached per type.
    """
    cls = type(item)
    try:
        return _KIND_BY_TYPE[cls]
    except KeyError:
        kind = next((k for k in (ProductHit, SeedSummary) if issubclass(cls, k)), None)
        _KIND_BY_TYPE[cls] = kind
        return kind
