"""Several photos of one product, as real crawls search them: a search a view, each view's rank kept, the
seed's matches fused by reciprocal rank fusion, a view that fails leaving the seed found by the others."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from datasets import load_dataset, run_crawl

from sandbox.catalog import builtin_catalog
from sandbox.cluttered import cluttered_photo
from sandbox.testing import SandboxProcess

KEY, SECRET = "views-key", "views+secret/7"
PRODUCT = 321


@pytest.fixture(scope="module")
def sandbox() -> SandboxProcess:
    with SandboxProcess("--app", f"{KEY}:{SECRET}") as process:
        yield process  # type: ignore[misc]


def _crawl(sandbox: SandboxProcess, seeds: str, out: Path):  # type: ignore[no-untyped-def]
    return run_crawl(seeds, "-a", "pages=1", dataset_dir=out, endpoint=sandbox.endpoint,
                     env={"IMAGESEARCH_APP_KEY": KEY, "IMAGESEARCH_APP_SECRET": SECRET})


def test_a_seeds_views_are_searched_each_and_fused(sandbox: SandboxProcess, tmp_path: Path) -> None:
    catalog, rng = builtin_catalog(), random.Random(21)
    product = catalog.products[PRODUCT]
    rows = []
    for view in range(3):
        data, box = cluttered_photo(product, rng, scale=(0.5, 0.55))
        (tmp_path / f"view{view}.jpg").write_bytes(data)
        # Each view with the product's box (a view may have a region of its own).
        rows.append({"seed_id": "mug", "image": f"view{view}.jpg", "region": ",".join(map(str, box))})
    rows.insert(1, {"seed_id": "other", "image": "view2.jpg", "region": ""})  # another seed, between the views
    rows.append({"seed_id": "mug", "image": "gone.jpg"})  # a fourth view that is not there
    manifest = tmp_path / "seeds.csv"
    with manifest.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["seed_id", "image", "region"])
        writer.writeheader()
        writer.writerows(rows)
    sandbox.reset()
    run = _crawl(sandbox, str(manifest), tmp_path / "out")
    assert run.returncode == 0, run.tail()
    # A call a view that has a photo, and one for the other seed (its photo whole: another search).
    assert sandbox.stats()["calls"]["total"] == 4
    tables = load_dataset(tmp_path / "out")
    seeds = tables["seeds"]
    mug = seeds[seeds["seed_id"] == "mug"].sort_values("view")
    assert list(mug["view"]) == [1, 2, 3, 4] and list(mug["status"]) == ["ok", "ok", "ok", "rejected"]
    assert list(mug["error_code"])[3] == "file_not_found"
    matches = tables["matches"]
    mine = matches[matches["seed_id"] == "mug"]
    assert sorted(set(mine["view"])) == [1, 2, 3]
    # Each product's fused rank: reciprocal rank fusion over the views, k = 60.
    best = mine.groupby(["num_iid", "view"])["position"].min().reset_index()
    score = best.assign(rrf=1 / (60 + best["position"])).groupby("num_iid")["rrf"].sum()
    order = sorted(score.index, key=lambda n: (-score[n], best[best["num_iid"] == n]["position"].min(), n))
    fused = mine.groupby("num_iid")["fused_rank"].agg(["min", "max"])
    assert (fused["min"] == fused["max"]).all()  # one fused rank a product, on each of its rows
    assert list(fused["min"].sort_values().index) == order and sorted(fused["min"]) == list(range(1, len(order) + 1))
    # The product first in each view cut to it: first over the seed.
    assert fused.loc[int(product.num_iid), "min"] == 1
    assert list(mug["region_source"])[:3] == ["given", "given", "given"]
    # A seed of one photo: its fused rank is the order of its positions.
    other = matches[matches["seed_id"] == "other"].sort_values("position")
    assert list(other["fused_rank"]) == list(range(1, len(other) + 1)) and set(other["view"]) == {1}
    # products: one row a num_iid; the seed given first wins it (mug's rows are first in the manifest).
    assert tables["products"].set_index("num_iid").loc[int(product.num_iid), "first_seed_id"] == "mug"


def test_a_views_directory_is_one_seed(sandbox: SandboxProcess, tmp_path: Path) -> None:
    rng = random.Random(4)
    shoe = tmp_path / "photos" / "shoe.views"
    shoe.mkdir(parents=True)
    for name in ("a-front.jpg", "b-side.jpg"):
        (shoe / name).write_bytes(cluttered_photo(builtin_catalog().products[PRODUCT + 1], rng)[0])
    run = _crawl(sandbox, str(tmp_path / "photos"), tmp_path / "out")
    assert run.returncode == 0, run.tail()
    seeds = load_dataset(tmp_path / "out")["seeds"]
    assert len(set(seeds["seed_id"])) == 1 and list(seeds.sort_values("view")["source"]) == [
        f"{tmp_path}/photos/shoe.views/a-front.jpg", f"{tmp_path}/photos/shoe.views/b-side.jpg"]
