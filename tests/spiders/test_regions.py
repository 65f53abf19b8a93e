"""A seed's region, as real crawls search it: the manifest's box cut out before the call for every gateway,
a bad box rejected with no call, IMAGESEARCH_CROP=auto finding the product, aliyun's detected region kept."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_dataset, run_crawl

from sandbox.catalog import builtin_catalog
from sandbox.cluttered import cluttered_photo
from sandbox.testing import SandboxProcess

KEY, SECRET = "region-key", "region+secret/9"
#: Catalogue products the cluttered photos show.
PRODUCTS = (101, 1203)


@pytest.fixture(scope="module")
def sandbox() -> SandboxProcess:
    with SandboxProcess("--app", f"{KEY}:{SECRET}") as process:
        yield process  # type: ignore[misc]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, tuple[int, int, int, int]]]]:
    """Two cluttered photos, each of a catalogue product, and the num_iid and box of each."""
    root, catalog, rng = tmp_path_factory.mktemp("regions"), builtin_catalog(), random.Random(5)
    truth = []
    for k, index in enumerate(PRODUCTS):
        data, box = cluttered_photo(catalog.products[index], rng, scale=(0.35, 0.4))
        (root / f"shelf{k}.jpg").write_bytes(data)
        truth.append((int(catalog.products[index].num_iid), box))
    return root, truth


def _manifest(root: Path, rows: list[dict[str, str]]) -> Path:
    path = root / f"manifest-{len(list(root.glob('manifest-*')))}.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["seed_id", "image", "region"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _crawl(sandbox: SandboxProcess, manifest: Path, out: Path, gateway: str = "top", *options: str):  # type: ignore[no-untyped-def]
    endpoint = sandbox.endpoint if gateway == "top" else sandbox.url
    return run_crawl(str(manifest), "-a", "pages=1", "-s", f"IMAGESEARCH_GATEWAY={gateway}", *options,
                     dataset_dir=out, endpoint=endpoint,
                     env={"IMAGESEARCH_APP_KEY": KEY, "IMAGESEARCH_APP_SECRET": SECRET})


def _rank(matches, seed_id: str, num_iid: int) -> int | None:  # type: ignore[no-untyped-def]
    rows = matches[(matches["seed_id"] == seed_id) & (matches["num_iid"] == num_iid)]
    return int(rows["position"].min()) if len(rows) else None


def _overlap(a: list[int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _box(box: tuple[int, int, int, int]) -> str:
    return ",".join(map(str, box))


@pytest.mark.parametrize("gateway", ["top", "onebound", "aliyun"])
def test_a_given_region_is_what_every_gateway_searches_and_a_bad_one_costs_no_call(
    sandbox: SandboxProcess, photos: tuple[Path, list[tuple[int, tuple[int, int, int, int]]]], tmp_path: Path,
    gateway: str,
) -> None:
    root, truth = photos
    (iid0, box0), (iid1, box1) = truth
    manifest = _manifest(root, [
        {"seed_id": "boxed0", "image": "shelf0.jpg", "region": _box(box0)},
        {"seed_id": "whole0", "image": "shelf0.jpg", "region": ""},
        {"seed_id": "boxed1", "image": "shelf1.jpg", "region": f" {box1[0]}, {box1[1]},{box1[2]} ,{box1[3]} "},
        {"seed_id": "empty", "image": "shelf1.jpg", "region": "300,300,200,400"},
        {"seed_id": "words", "image": "shelf1.jpg", "region": "the shoe"},
        {"seed_id": "outside", "image": "shelf1.jpg", "region": "0,0,641,100"},
    ])
    sandbox.reset()
    run = _crawl(sandbox, manifest, tmp_path / "out", gateway)
    assert run.returncode == 0, run.tail()
    tables = load_dataset(tmp_path / "out")
    seeds = tables["seeds"].set_index("seed_id")
    # Three searches, each one page: a bad box is refused before anything is sent.
    searches = sandbox.stats()["calls"]["total"] - (3 if gateway == "onebound" else 0)  # onebound uploads first
    assert searches == 3, sandbox.stats()["calls"]
    for seed_id, says in [("empty", "is empty"), ("words", "is not left,top,right,bottom"),
                          ("outside", "reaches outside the photo, which is 640x640")]:
        assert seeds.loc[seed_id, "status"] == "rejected" and seeds.loc[seed_id, "error_code"] == "bad_region"
        assert says in seeds.loc[seed_id, "error_msg"]
    assert seeds.loc["boxed0", "region"] == _box(box0) and seeds.loc["boxed0", "region_source"] == "given"
    assert seeds.loc["boxed1", "region"] == _box(box1)
    # The product is found first from its box.
    matches = tables["matches"]
    assert _rank(matches, "boxed0", iid0) == 1 and _rank(matches, "boxed1", iid1) == 1
    if gateway == "aliyun":
        # The service detected its product in the picture it was sent (the box): kept in the photo's pixels.
        detected = [int(v) for v in seeds.loc["boxed0", "main_region"].split(",")]
        assert all(abs(a - b) <= 2 for a, b in zip(detected, box0, strict=True)), (detected, box0)
        # The whole photo, sent with Crop=true: the service cut out the product it found, and said where.
        assert seeds.loc["whole0", "region_source"] == "service"
        assert seeds.loc["whole0", "region"] == seeds.loc["whole0", "main_region"]
        found = [int(v) for v in seeds.loc["whole0", "region"].split(",")]
        assert _overlap(found, box0) > 0.4, (found, box0)
    else:
        # From the whole cluttered photo, lower or not at all.
        assert pd.isna(seeds.loc["whole0", "region"]) and seeds.loc["whole0", "region_source"] == "none"
        assert (_rank(matches, "whole0", iid0) or 99) > 1
        assert seeds["main_region"].isna().all()


def test_auto_crop_finds_the_product_where_no_region_is_given(
    sandbox: SandboxProcess, photos: tuple[Path, list[tuple[int, tuple[int, int, int, int]]]], tmp_path: Path,
) -> None:
    root, truth = photos
    manifest = _manifest(root, [{"seed_id": f"auto{k}", "image": f"shelf{k}.jpg", "region": ""} for k in range(2)]
                         + [{"seed_id": "given", "image": "shelf0.jpg", "region": _box(truth[0][1])}])
    run = _crawl(sandbox, manifest, tmp_path / "out", "top", "-s", "IMAGESEARCH_CROP=auto")
    assert run.returncode == 0, run.tail()
    tables = load_dataset(tmp_path / "out")
    seeds = tables["seeds"].set_index("seed_id")
    assert list(seeds["region_source"].loc[["auto0", "auto1", "given"]]) == ["auto", "auto", "given"]
    for k, (num_iid, box) in enumerate(truth):
        found = [int(v) for v in seeds.loc[f"auto{k}", "region"].split(",")]
        width = max(0, min(found[2], box[2]) - max(found[0], box[0]))
        height = max(0, min(found[3], box[3]) - max(found[1], box[1]))
        assert width * height > 0.5 * (box[2] - box[0]) * (box[3] - box[1]), (found, box)
        assert _rank(tables["matches"], f"auto{k}", num_iid) == 1


def test_a_bad_crop_setting_is_one_line(tmp_path: Path, photos: tuple[Path, list]) -> None:  # type: ignore[type-arg]
    run = run_crawl(str(photos[0]), "-s", "IMAGESEARCH_CROP=smart", dataset_dir=tmp_path / "out")
    assert run.returncode == 2 and "IMAGESEARCH_CROP='smart': use one of none, auto" in run.stderr, run.tail()
    assert "Traceback" not in run.stderr
