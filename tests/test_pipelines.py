"""Item pipelines built by a real Scrapy crawler from the project settings: drops, normalisation, dedup, run ids."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.extensions.feedexport import FeedExporter
from scrapy.pipelines import ItemPipelineManager
from scrapy.utils.misc import build_from_crawler, load_object
from scrapy.utils.test import get_crawler

import pipeline.settings as project_settings
from items import ProductHit, SeedSummary
from pipeline.pipelines import DeduplicatePipeline, NormalizePipeline, ValidatePipeline

CRAWLED_AT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def project_crawler(**overrides: Any) -> Crawler:
    settings = {k: v for k, v in vars(project_settings).items() if k.isupper()}
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
        self.pipelines = [build_from_crawler(load_object(path), crawler) for path, _ in order]

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
    return Chain(project_crawler(DATASET_RUN_ID="20261125T101500Z-3fa2c1"))


def test_project_registers_the_chain_in_order() -> None:
    crawler = project_crawler()
    order = sorted(crawler.settings.getdict("ITEM_PIPELINES").items(), key=lambda kv: kv[1])
    assert [path.rsplit(".", 1)[1] for path, _ in order] == [
        "ValidatePipeline",
        "NormalizePipeline",
        "DeduplicatePipeline",
    ]


def test_pipelines_use_the_no_spider_signature_without_deprecation_warnings() -> None:
    crawler = project_crawler()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manager = ItemPipelineManager.from_crawler(crawler)
    assert len(manager.middlewares) == 3
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
    # Missing is not unparseable.
    item = chain(hit(num_iid=2, price="", sales=None))
    assert (item["price_raw"], item["sales_raw"]) == (None, None)
    assert chain.stat("dataset/unparsed/price") == 1


def test_with_a_plain_feed_the_first_hit_to_arrive_is_the_product(tmp_path: Any) -> None:
    chain = Chain(project_crawler(FEEDS={str(tmp_path / "hits.jsonl"): {"format": "jsonlines"}}))
    first = chain(hit(num_iid="100", seed_id="seed-a"))
    again = chain(hit(num_iid=100, seed_id="seed-b"))
    other = chain(hit(num_iid="101", seed_id="seed-b"))
    third = chain(hit(num_iid="100", seed_id="seed-c"))
    assert [i["is_duplicate"] for i in (first, again, other, third)] == [False, True, False, True]
    assert first["first_seed_id"] == "seed-a"
    assert other["first_seed_id"] == "seed-b"
    assert chain.stat("dataset/products/unique") == 2
    assert chain.stat("dataset/products/duplicates") == 2


#: Answers arriving out of seed order, as concurrent requests make them.
OUT_OF_ORDER_HITS = [
    {"num_iid": "100", "seed_id": "seed-c", "seed_rank": 2, "position": 1},
    {"num_iid": "101", "seed_id": "seed-b", "seed_rank": 1, "position": 4},
    {"num_iid": "100", "seed_id": "seed-a", "seed_rank": 0, "position": 7},
    {"num_iid": "100", "seed_id": "seed-b", "seed_rank": 1, "position": 2},
]


def _assert_first_seeds_win(chain: Chain, rows: list[Any]) -> None:
    hits = [chain(hit(**fields)) for fields in OUT_OF_ORDER_HITS]
    assert all(h["is_duplicate"] for h in hits)  # every hit is a match; products rows come at close
    assert rows == []
    assert chain.stat("dataset/products/unique") == 2  # closes the pipelines
    assert [(r["num_iid"], r["first_seed_id"]) for r in rows] == [(100, "seed-a"), (101, "seed-b")]
    assert all(r["product_row"] and r["is_duplicate"] is False for r in rows)
    assert chain.stat("dataset/products/duplicates") == 2
    assert len(rows) == 2  # closing twice emits nothing more


def test_products_rows_go_to_the_first_seed_given_whatever_order_hits_arrive_in(
    chain: Chain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows: list[Any] = []
    feeds = chain.crawler.get_extension(FeedExporter)
    assert feeds is not None
    monkeypatch.setattr(feeds, "item_scraped", lambda item, spider: rows.append(item))
    _assert_first_seeds_win(chain, rows)


def test_without_the_feed_exporter_products_rows_go_out_as_item_scraped_signals() -> None:
    extensions = {**project_settings.EXTENSIONS, "scrapy.extensions.feedexport.FeedExporter": None}
    chain = Chain(project_crawler(DATASET_RUN_ID="20261125T101500Z-3fa2c1", EXTENSIONS=extensions))
    assert chain.crawler.get_extension(FeedExporter) is None
    rows: list[Any] = []
    chain.crawler.signals.connect(lambda item, **kw: rows.append(item), signal=signals.item_scraped, weak=False)
    _assert_first_seeds_win(chain, rows)


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
    dedup = build_from_crawler(DeduplicatePipeline, crawler)
    item = run(dedup.process_item(run(normalize.process_item(run(validate.process_item(hit()))))))
    assert item["is_duplicate"] is True and item["run_id"] == crawler.settings["DATASET_RUN_ID"]


def products_rows(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The products rows the dedup pipeline hands the feed exporter, as it hands them."""
    rows: list[Any] = []
    monkeypatch.setattr(
        chain.crawler.get_extension(FeedExporter), "item_scraped", lambda item, spider: rows.append(item)
    )
    return rows


def summary(seed_rank: int) -> SeedSummary:
    return SeedSummary(seed_id=f"seed-{seed_rank}", status="ok", seed_rank=seed_rank)


def test_products_rows_go_out_once_their_seed_and_every_earlier_one_is_summarised(
    chain: Chain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = products_rows(chain, monkeypatch)
    for seed_rank in (1, 0):
        for n in (3, 2, 1):
            chain(hit(num_iid=str(100 * seed_rank + n), seed_id=f"seed-{seed_rank}", seed_rank=seed_rank, position=n))
    chain(summary(1))
    assert rows == []  # seed 0 may still find any of seed 1's products
    chain(summary(0))
    assert [(r["num_iid"], r["first_seed_id"]) for r in rows] == [(1, "seed-0"), (2, "seed-0"), (3, "seed-0"),
                                                                  (101, "seed-1"), (102, "seed-1"), (103, "seed-1")]
    assert all(r["product_row"] and r["is_duplicate"] is False for r in rows)
    chain.stat("dataset/products/unique")
    assert len(rows) == 6  # nothing left for the close
    assert chain.crawler.stats.get_value("dataset/products/held_on_disk") is None


def test_an_earlier_seeds_hit_arriving_later_still_wins(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = products_rows(chain, monkeypatch)
    chain(hit(seed_id="seed-2", seed_rank=2, position=1, title="seed 2"))
    chain(summary(2))
    chain(hit(seed_id="seed-1", seed_rank=1, position=9, title="seed 1, page 1"))
    chain(hit(seed_id="seed-1", seed_rank=1, position=4, title="seed 1, its best"))  # a page answered out of order
    chain(summary(1))
    chain(hit(seed_id="seed-3", seed_rank=3, position=1, title="seed 3"))
    assert rows == []
    chain(summary(0))  # a seed with no hits at all
    assert [(r["first_seed_id"], r["title"]) for r in rows] == [("seed-1", "seed 1, its best")]
    chain(summary(3))
    assert chain.stat("dataset/products/duplicates") == 3 and len(rows) == 1


def test_a_hit_after_its_seeds_summary_cannot_change_an_emitted_row(
    chain: Chain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = products_rows(chain, monkeypatch)
    chain(hit(seed_id="seed-1", seed_rank=1, position=1, title="seed 1"))
    chain(summary(0))
    chain(summary(1))
    chain(hit(seed_id="seed-0", seed_rank=0, position=1, title="late"))  # the spider never does this
    chain(hit(num_iid="7", seed_id="seed-0", seed_rank=0, position=2, title="late, new product"))
    chain.stat("dataset/products/unique")
    assert [(r["num_iid"], r["title"]) for r in rows] == [(652345678901, "seed 1"), (7, "late, new product")]
    assert chain.crawler.stats.get_value("dataset/products/late_hits") == 2


def test_rows_of_seeds_never_summarised_go_out_at_close(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped crawl: its seeds' best rows so far are the products rows."""
    rows = products_rows(chain, monkeypatch)
    for seed_rank in (4, 2):
        chain(hit(num_iid=str(10 - seed_rank), seed_id=f"seed-{seed_rank}", seed_rank=seed_rank))
    chain(summary(2))
    assert rows == []
    chain.stat("dataset/products/unique")
    assert [(r["num_iid"], r["first_seed_id"]) for r in rows] == [(8, "seed-2"), (6, "seed-4")]


def test_winners_kept_on_disk_across_many_flushes(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past HOLD_ROWS waiting rows, the best hit per num_iid waits on disk, survives being written out
    and beaten later."""
    from pipeline import pipelines

    monkeypatch.setattr(pipelines._WinnerStore, "_FLUSH_ROWS", 7)
    monkeypatch.setattr(pipelines.DeduplicatePipeline, "HOLD_ROWS", 25)
    rows = products_rows(chain, monkeypatch)
    chain(summary(0))
    chain(hit(num_iid="999", seed_id="seed-1", seed_rank=1, position=1, title="out before the store"))
    chain(summary(1))
    assert len(rows) == 1
    # 40 products, each hit by seeds 7, 6, ..., 2 in that order: every hit beats the last one.
    for seed_rank in range(7, 1, -1):
        for n in range(40):
            chain(hit(num_iid=str(1000 + n), seed_id=f"seed-{seed_rank}", seed_rank=seed_rank, position=n + 1,
                      title=f"seen by seed {seed_rank}"))
        chain(summary(seed_rank))
    chain(hit(num_iid="999", seed_id="seed-2", seed_rank=2, position=1, title="worse than the emitted row"))
    for n in range(40):  # worse than the rows on disk: stored rows must not be replaced by them
        chain(hit(num_iid=str(1000 + n), seed_id="seed-9", seed_rank=9, position=1, title="seen by seed 9"))
    assert len(rows) == 1
    assert chain.stat("dataset/products/unique") == 41
    assert [r["num_iid"] for r in rows] == [999, *range(1000, 1040)]
    assert {(r["first_seed_id"], r["title"]) for r in rows[1:]} == {("seed-2", "seen by seed 2")}
    assert chain.crawler.stats.get_value("dataset/products/held_on_disk") == 26
    assert chain.crawler.stats.get_value("dataset/products/duplicates") == (1 + 6 * 40 + 1 + 40) - 41  # hits - unique


def test_id_set_holds_ids_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.pipelines import IdSet

    monkeypatch.setattr(IdSet, "RECENT", 5)
    ids = IdSet()
    added = [2**63 - 1, 1, 652345678901, 7, 3, 99, 2**40, 5, 11, 8, 4]
    for n in added:
        assert n not in ids
        ids.add(n)
    assert len(ids) == len(added) and len(ids._sorted) == 10  # two merges into the sorted array
    assert all(n in ids for n in added)
    assert not any(n in ids for n in (0, 2, 6, 10, 12, 2**62, 652345678900))
    assert 652345678901 + IdSet._BITS not in ids and 7 + IdSet._BITS not in ids  # same low bits as ids in the set


def test_winner_rows_come_back_from_disk_exactly() -> None:
    from pipeline.pipelines import _decode_row, _encode_row

    crawled_at = datetime(2026, 11, 25, 10, 15, 0, 123456, tzinfo=UTC)
    row = (1, "标题 \\n \"x\"", None, "https://x/y", "店", True, Decimal("39.90"), Decimal("119.70"), "39.90-119.70",
           12_000, "1.2万+人付款", "run", crawled_at, "seed-a")
    assert _decode_row(_encode_row(row)) == row
    assert _decode_row(_encode_row(row))[12].tzinfo is not None
    # A value of another kind than the schema's (a float price) still comes back as it was.
    odd = row[:6] + (39.9,) + row[7:]
    assert _decode_row(_encode_row(odd)) == odd
