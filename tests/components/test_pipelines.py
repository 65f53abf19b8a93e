"""Item pipelines built by a real Scrapy crawler from the project settings: drops, normalisation, run ids."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, NotConfigured
from scrapy.pipelines import ItemPipelineManager
from scrapy.utils.misc import build_from_crawler, load_object
from scrapy.utils.test import get_crawler

import pipeline.settings as project_settings
from items import ProductHit, SeedSummary
from pipeline.components.pipelines import NormalizePipeline, ValidatePipeline

CRAWLED_AT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def project_crawler(**overrides: Any) -> Crawler:
    settings = {k: v for k, v in vars(project_settings).items() if k.isupper()}
    settings["ADDONS"] = {}  # no run: these crawlers never crawl, and a run would lock a dataset directory
    settings.update(overrides)
    return get_crawler(settings_dict=settings)


def hit(**fields: Any) -> ProductHit:
    base: dict[str, Any] = {
        "title": "<span class=H>耐克</span> Air &amp; Max",
        "pic_url": "//g-search3.alicdn.com/img/1.jpg",
        "price": "200-600",
        "sales": "1.2万+人付款",
        "num_iid": "652345678901",
        "detail_url": "//item.taobao.com/item.htm?id=652345678901",
        "seller_nick": " 耐克官方旗舰店 ",
        "is_tmall": "true",
        "seed_id": "seed-a",
        "page": "1",
        "position": 3,
        "cat": 50015374,
        "crawled_at": CRAWLED_AT,
    }
    base.update(fields)
    return ProductHit(**base)


def run(coro: Any) -> Any:
    """The result of a pipeline's process_item coroutine, run to its end here (it awaits nothing)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("process_item waited for something")


class Chain:
    """The project's pipelines, built by the crawler, applied in ITEM_PIPELINES order."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        order = sorted(crawler.settings.getdict("ITEM_PIPELINES").items(), key=lambda kv: kv[1])
        self.pipelines = []
        for path, _ in order:
            try:
                self.pipelines.append(build_from_crawler(load_object(path), crawler))
            except NotConfigured:  # the listing pictures (IMAGESEARCH_PICTURES=False): they need the engine
                continue

    def __call__(self, item: Any) -> Any:
        for p in self.pipelines:
            item = run(p.process_item(item))
        return item

    def stat(self, key: str) -> Any:
        for p in self.pipelines:
            if hasattr(p, "close_spider"):
                p.close_spider()
        return self.crawler.stats.get_value(key)


@pytest.fixture
def chain() -> Chain:
    return Chain(project_crawler(DATASET_RUN_ID="20261125T101500Z-3fa2c1", IMAGESEARCH_PICTURES=False))


def test_project_registers_the_chain_in_order() -> None:
    crawler = project_crawler()
    order = sorted(crawler.settings.getdict("ITEM_PIPELINES").items(), key=lambda kv: kv[1])
    assert [path.rsplit(".", 1)[1] for path, _ in order] == ["ValidatePipeline", "NormalizePipeline",
                                                             "ListingPicturesPipeline"]


def test_pipelines_use_the_no_spider_signature_without_deprecation_warnings(tmp_path: Path) -> None:
    crawler = project_crawler(DATASET_DIR=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manager = ItemPipelineManager.from_crawler(crawler)
    assert len(manager.middlewares) == 3
    assert (tmp_path / "_pictures").is_dir()  # the listing pictures' store, in the dataset's directory
    assert not manager._mw_methods_requiring_spider


def test_a_hit_is_normalised_to_the_table_types(chain: Chain) -> None:
    item = chain(hit())
    assert item["num_iid"] == 652345678901
    assert item["title"] == "耐克 Air & Max"
    assert item["pic_url"] == "https://g-search3.alicdn.com/img/1.jpg"
    assert item["detail_url"] == "https://item.taobao.com/item.htm?id=652345678901"
    assert item["seller_nick"] == "耐克官方旗舰店"
    assert item["is_tmall"] is True
    assert (item["price_min"], item["price_max"], item["price_raw"]) == (
        Decimal("200.00"), Decimal("600.00"), "200-600"
    )
    assert (item["sales"], item["sales_raw"]) == (12000, "1.2万+人付款")
    assert (item["page"], item["position"], item["cat"]) == (1, 3, "50015374")
    assert item["crawled_at"] == CRAWLED_AT
    assert item["run_id"] == "20261125T101500Z-3fa2c1"


def test_numbers_from_a_number_typed_gateway(chain: Chain) -> None:
    item = chain(hit(price=39.5, sales=777, num_iid=652345678901, is_tmall=False))
    assert (item["price_min"], item["price_raw"], item["sales"], item["sales_raw"]) == (
        Decimal("39.50"), "39.5", 777, "777"
    )
    assert item["is_tmall"] is False


def test_what_a_gateway_says_beside_price_and_sales_is_kept_when_it_is_one_of_ours(chain: Chain) -> None:
    # aliyun's answer: a number of the last 30 days' sales, its price after coupon, the match's score.
    item = chain(hit(price="79.00", sales=1200, sales_kind="monthly", coupon_price="69.00", score="0.93"))
    assert (item["sales"], item["sales_kind"], item["sales_raw"]) == (1200, "monthly", "1200")
    assert (item["price_min"], item["coupon_price"], item["score"]) == (Decimal("79.00"), Decimal("69.00"), 0.93)
    # A word that is not one of sales_kind's is not written: the kind comes from the sales, as for any gateway.
    assert chain(hit(sales="338人付款", sales_kind="weekly"))["sales_kind"] == "paid"
    # No sales, no kind of sales.
    assert chain(hit(sales="", sales_kind="monthly"))["sales_kind"] is None
    assert chain(hit(score=float("inf")))["score"] is None and chain(hit())["score"] is None


@pytest.mark.parametrize("bad", [None, "", "abc", 0, -1, 1.5, True, str(2**63)])
def test_a_hit_without_a_usable_num_iid_is_dropped_quietly_and_counted(chain: Chain, bad: Any) -> None:
    with pytest.raises(DropItem) as info:
        chain(hit(num_iid=bad))
    assert info.value.log_level == "DEBUG"  # not Scrapy's default WARNING per item
    assert chain.stat("dataset/dropped/invalid_num_iid") == 1


def test_items_without_seed_id_are_dropped_and_counted(chain: Chain) -> None:
    for item in (hit(seed_id=None), SeedSummary(status="ok")):
        with pytest.raises(DropItem):
            chain(item)
    assert chain.stat("dataset/dropped/missing_seed_id") == 2


def test_unparseable_price_and_sales_become_null_keep_raw_and_are_counted(chain: Chain) -> None:
    item = chain(hit(price="面议", sales="30天销量 200"))
    assert (item["price_min"], item["price_max"], item["price_raw"]) == (None, None, "面议")
    assert (item["sales"], item["sales_raw"]) == (None, "30天销量 200")
    assert chain.stat("dataset/unparsed/price") == 1
    assert chain.stat("dataset/unparsed/sales") == 1
    # Missing is not unparseable; the raw columns keep exactly what was sent, blanks too.
    item = chain(hit(num_iid=2, price="", sales="  "))
    assert (item["price_raw"], item["sales_raw"], item["sales_kind"]) == ("", "  ", None)
    assert chain.stat("dataset/unparsed/price") == 1 and chain.stat("dataset/unparsed/sales") == 1
    item = chain(hit(num_iid=3, price=None, sales=None))
    assert (item["price_raw"], item["sales_raw"]) == (None, None)


def test_prices_and_sales_the_gateways_write_are_read_as_they_mean(chain: Chain) -> None:
    cases = {
        "￥39.9起": (Decimal("39.90"), None, None), "88.8元/件": (Decimal("88.80"), Decimal("88.80"), None),
        "券后 29.9": (None, None, Decimal("29.90")), "0.001": (None, None, None),
    }
    for n, (price, expected) in enumerate(cases.items(), start=10):
        item = chain(hit(num_iid=n, price=price, sales="月销 300"))
        assert (item["price_min"], item["price_max"], item["coupon_price"]) == expected, price
        assert (item["price_raw"], item["sales"], item["sales_kind"]) == (price, 300, "monthly")
    assert chain.stat("dataset/unparsed/price") == 1  # 0.001 alone: a coupon price is a price


def test_seed_summaries_are_normalised_and_stamped(chain: Chain) -> None:
    item = chain(SeedSummary(
        seed_id="seed-a", source=" a.jpg ", status="failed", error_code=15, error_msg="sign",
        total_results="120", pages_fetched="0", items_found=0,
    ))
    assert item["error_code"] == "15"
    assert item["source"] == "a.jpg"
    assert (item["total_results"], item["pages_fetched"], item["items_found"]) == (120, 0, 0)
    assert item["run_id"] == "20261125T101500Z-3fa2c1"


def test_other_items_pass_through_untouched(chain: Chain) -> None:
    assert chain({"anything": 1}) == {"anything": 1}


def test_without_the_addon_a_run_id_is_still_generated() -> None:
    crawler = project_crawler(ADDONS={}, DATASET_RUN_ID=None)
    a = run(build_from_crawler(NormalizePipeline, crawler).process_item(SeedSummary(seed_id="s")))
    assert a["run_id"][:8].isdigit() and len(a["run_id"]) == len("20261125T101500Z-3fa2c1")


def test_each_pipeline_stands_alone() -> None:
    crawler = project_crawler()
    validate = build_from_crawler(ValidatePipeline, crawler)
    normalize = build_from_crawler(NormalizePipeline, crawler)
    item = run(normalize.process_item(run(validate.process_item(hit()))))
    assert item["num_iid"] == 652345678901 and item["run_id"]
