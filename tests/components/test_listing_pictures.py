"""Listing pictures and offer groups, as real crawls of the sandbox's catalogue make them: each picture fetched
once (and not again the next day), the groups the catalogue was built with, the offers table's spread, ids
kept across runs, no call more than without pictures, and a CDN outage that loses no row."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import load_dataset, run_crawl

from pipeline.pictures import picture_url
from sandbox.catalog import builtin_catalog
from sandbox.testing import SandboxProcess


def _crawl(sandbox: SandboxProcess, out: Path, store: Path, *options: str):  # type: ignore[no-untyped-def]
    return run_crawl("data/seeds", "-a", "pages=1", "-s", "IMAGESEARCH_QUOTA=", "-s",
                     f"IMAGESEARCH_PICTURES_STORE={store}", *options, dataset_dir=out, endpoint=sandbox.endpoint,
                     pictures=True)


def _run_ids(out: Path) -> list[str]:
    manifests = [json.loads(p.read_text(encoding="utf-8")) for p in (out / "_manifests").glob("*.json")]
    return [m["run_id"] for m in sorted(manifests, key=lambda m: m["started_at"])]


def _runs(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "parquet" / "runs").sort_values("started_at")


def _labels() -> dict[int, Any]:
    """The catalogue's own groups: each listing's offer (an original and its resellers share one)."""
    return {int(p.num_iid): p.offer if p.offer is not None else f"alone-{p.num_iid}" for p in builtin_catalog()}


@pytest.fixture(scope="module")
def crawled(sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two daily runs into one dataset with one picture store, and a run without pictures."""
    root = tmp_path_factory.mktemp("pictures")
    got: dict[str, Any] = {"root": root}
    for day in ("first", "second"):
        sandbox.reset()
        run = _crawl(sandbox, root / "datasets", root / "pictures")
        assert run.returncode == 0, run.tail()
        got[day] = {"stats": sandbox.stats(), "stderr": run.stderr}
    first, second = _run_ids(root / "datasets")
    got["first"]["tables"] = load_dataset(root / "datasets", first)
    got["second"]["tables"] = load_dataset(root / "datasets", second)
    sandbox.reset()
    run = _crawl(sandbox, root / "off", root / "off-pictures", "-s", "IMAGESEARCH_PICTURES=False")
    assert run.returncode == 0, run.tail()
    got["off"] = {"stats": sandbox.stats(), "tables": load_dataset(root / "off")}
    return got


def test_each_picture_is_fetched_once_and_not_again_the_next_day(crawled: dict[str, Any]) -> None:
    products = crawled["first"]["tables"]["products"]
    served = crawled["first"]["stats"]["pictures"]["by_path"]
    wanted = {picture_url(url).split("/img/")[1] for url in products["pic_url"]}
    # Listings name their pictures at CDN sizes and in WebP too: each picture is fetched once, as itself.
    assert any("_400x400" in url or "_.webp" in url for url in products["pic_url"])
    assert {path.removeprefix("/img/") for path in served} == wanted
    assert set(served.values()) == {1}
    assert products["pic_hash"].notna().all() and products["pic_colour"].str.len().eq(96).all()
    # The next day's run finds every picture in its store: none fetched again.
    assert crawled["second"]["stats"]["pictures"]["total"] == 0
    assert crawled["second"]["tables"]["products"]["pic_hash"].notna().all()


def test_a_crawl_of_the_catalogue_gives_the_groups_it_was_built_with(crawled: dict[str, Any]) -> None:
    products = crawled["first"]["tables"]["products"]
    labels = _labels()
    offer = dict(zip(products["num_iid"], products["offer_id"], strict=True))
    pairs = list(itertools.combinations(offer, 2))
    same = [(a, b) for a, b in pairs if labels[a] == labels[b]]
    grouped = [(a, b) for a, b in pairs if offer[a] == offer[b]]
    assert len(same) >= 20  # the demo seeds' products have resellers among their matches
    assert not [pair for pair in grouped if labels[pair[0]] != labels[pair[1]]]  # no look-alike joins a group
    assert sum(offer[a] == offer[b] for a, b in same) >= 0.9 * len(same)
    matches = crawled["first"]["tables"]["matches"]
    assert (matches["offer_id"] == matches["num_iid"].map(offer)).all()


def test_the_offers_table_has_each_groups_spread_and_cheapest_listing(crawled: dict[str, Any]) -> None:
    tables = crawled["first"]["tables"]
    products, offers = tables["products"], tables["offers"].set_index("offer_id")
    assert set(offers.index) == set(products["offer_id"]) and offers.index.is_unique
    for offer_id, listings in products.groupby("offer_id"):
        row = offers.loc[offer_id]
        priced = listings.dropna(subset=["price_min"]).sort_values(["price_min", "num_iid"])
        assert row["listings"] == len(listings) and row["sellers"] == listings["seller_nick"].nunique()
        assert row["tmall_listings"] == int(listings["is_tmall"].fillna(False).sum())
        assert row["priced_listings"] == len(priced)
        if len(priced):
            prices = sorted(Decimal(str(p)) for p in priced["price_min"])
            middle = len(prices) // 2
            median = prices[middle] if len(prices) % 2 else (prices[middle - 1] + prices[middle]) / 2
            assert Decimal(str(row["price_min"])) == prices[0] and Decimal(str(row["price_max"])) == prices[-1]
            assert abs(Decimal(str(row["price_median"])) - median) <= Decimal("0.005")
            assert row["cheapest_num_iid"] == priced["num_iid"].iloc[0]
            assert row["cheapest_seller_nick"] == priced["seller_nick"].iloc[0]
    seeds = tables["matches"].groupby("offer_id")["seed_id"].nunique()
    assert (offers["seeds"] == seeds.reindex(offers.index)).all()
    assert (offers["listings"] > 1).sum() >= 4


def test_an_offer_keeps_its_id_the_next_day_and_offers_latest_has_each_once(crawled: dict[str, Any]) -> None:
    first, second = crawled["first"]["tables"]["products"], crawled["second"]["tables"]["products"]
    assert dict(zip(first["num_iid"], first["offer_id"], strict=True)) == dict(
        zip(second["num_iid"], second["offer_id"], strict=True))
    latest = pd.read_parquet(crawled["root"] / "datasets" / "parquet" / "offers_latest")
    assert latest["offer_id"].is_unique and set(latest["offer_id"]) == set(first["offer_id"])
    assert (latest["runs_seen"] == 2).all()


def test_pictures_cost_no_call_and_off_every_listing_is_an_offer_of_its_own(crawled: dict[str, Any]) -> None:
    on, off = crawled["first"], crawled["off"]
    assert on["stats"]["calls"]["total"] == off["stats"]["calls"]["total"] == 8
    assert off["stats"]["pictures"]["total"] == 0
    products = off["tables"]["products"]
    assert products["pic_hash"].isna().all() and products["offer_id"].is_unique
    assert len(off["tables"]["offers"]) == len(products)
    assert _runs(crawled["root"] / "off")["pictures_missing"].isna().all()
    assert _runs(crawled["root"] / "datasets")["pictures_missing"].tolist() == [0, 0]
    keep = [c for c in products.columns if c not in ("pic_hash", "pic_colour", "offer_id", "run_id", "run_started_at",
                                                     "crawled_at", "pic_url", "detail_url")]
    assert on["tables"]["products"][keep].equals(products[keep])


def test_a_cdn_outage_leaves_the_run_committed_with_the_pictures_counted_missing(
    make_sandbox: Any, tmp_path: Path,
) -> None:
    sandbox = make_sandbox("--cdn-down")
    run = _crawl(sandbox, tmp_path / "datasets", tmp_path / "pictures")
    assert run.returncode == 0, run.tail()
    assert run.manifest()["complete"] is True
    tables = load_dataset(tmp_path / "datasets")
    products = tables["products"]
    pictures = {picture_url(url) for url in products["pic_url"]}
    assert _runs(tmp_path / "datasets")["pictures_missing"].tolist() == [len(pictures)]
    assert products["pic_hash"].isna().all() and products["offer_id"].is_unique
    assert sandbox.stats()["pictures"]["total"] == 2 * len(pictures)  # each tried, retried once
    said = [line for line in run.stderr.splitlines() if "listing pictures could not be fetched" in line]
    assert len(said) == 1 and f"{len(pictures)} listing pictures" in said[0], run.tail()
    assert "Traceback" not in run.stderr and "File (" not in run.stderr
