"""The built-in catalogue's variety, JSON-lines catalogues, and the feature cache."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sandbox.catalog import ITEM_FIELDS, CatalogError, builtin_catalog, load_jsonl
from sandbox.search import VisualIndex
from sandbox.testing import post, signed_params

SEARCH = "taobao.image.search"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog():
    return builtin_catalog()


def test_builtin_catalogue_is_big_varied_and_deterministic(catalog):
    assert len(catalog) >= 2000
    cats = Counter(catalog.cats)
    assert len(cats) >= 8 and min(cats.values()) >= 100
    again = builtin_catalog()
    assert [p.fields for p in again] == [p.fields for p in catalog]
    assert np.array_equal(np.asarray(again.products[9].image()), np.asarray(catalog.products[9].image()))


def test_builtin_values_take_every_real_world_form(catalog):
    fields = [p.fields for p in catalog]
    sales = {f["sales"] for f in fields}
    for form in ("人付款", "万人付款", "万+人付款", "+人收货", "月销 ", "已售 "):
        assert any(isinstance(s, str) and form in s for s in sales), form
    assert any(isinstance(s, int) for s in sales) and {7, 777} <= sales
    assert any(isinstance(s, str) and s.endswith("+") for s in sales)
    prices = [f["price"] for f in fields]
    assert "" in prices and any(isinstance(p, float) for p in prices)
    assert any(isinstance(p, str) and "-" in p and " " not in p for p in prices)
    assert any(isinstance(p, str) and p.startswith(("¥", "￥")) for p in prices)
    assert {type(f["num_iid"]) for f in fields} == {int, str}
    assert {type(f["is_tmall"]) for f in fields} == {bool, str}
    assert any(f["detail_url"].startswith("//") for f in fields)
    assert any(f["detail_url"].startswith("http://") for f in fields)
    assert any("detail.tmall.com" in f["detail_url"] for f in fields)
    assert any("<span class=H>" in f["title"] for f in fields)
    assert any("&amp;" in f["title"] for f in fields)
    assert all(set(f) == set(ITEM_FIELDS) for f in fields)


def write_catalogue(directory: Path, colours: list[tuple[int, int, int]], extra: list[dict] | None = None) -> Path:
    lines = []
    for n, colour in enumerate(colours):
        Image.new("RGB", (64, 64), colour).save(directory / f"p{n}.png")
    records = extra or []
    for record in records:
        lines.append(json.dumps(record, ensure_ascii=False))
    path = directory / "catalog.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_catalogue_serves_values_as_held_and_ties_break_by_num_iid(make_sandbox, tmp_path):
    records = [
        {"num_iid": "900000000003", "title": "红色 A", "price": 39.5, "sales": "1.2万+人付款", "cat": "16",
         "image": "p0.png", "is_tmall": True},
        {"num_iid": 900000000001, "title": "红色 B", "price": "200-600", "sales": 7, "cat": "16", "image": "p0.png",
         "pic_url": "//img.alicdn.com/bao/x.jpg", "detail_url": "//item.taobao.com/item.htm?id=900000000001"},
        {"num_iid": "900000000002", "title": "蓝色", "price": "", "sales": "已售 200", "cat": "1512",
         "image": "p1.png"},
    ]
    path = write_catalogue(tmp_path, [(220, 20, 20), (20, 20, 220)], records)
    sb = make_sandbox("--catalog", str(path))
    import base64
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (80, 80), (222, 22, 22)).save(buffer, "JPEG")
    answer = post(sb.endpoint, signed_params(SEARCH, image_data=base64.b64encode(buffer.getvalue()).decode()))
    response = answer["image_search_response"]
    items = response["items"]["item"]
    assert response["total_results"] == "3"
    # The two identical red pictures tie; the smaller num_iid comes first.
    assert [i["num_iid"] for i in items] == [900000000001, "900000000003", "900000000002"]
    assert items[1]["price"] == 39.5 and items[1]["is_tmall"] is True and items[0]["sales"] == 7
    assert items[0]["pic_url"] == "//img.alicdn.com/bao/x.jpg"
    assert items[1]["pic_url"] == f"//{sb.url.split('//')[1]}/img/900000000003.jpg"
    assert items[2]["seller_nick"] == ""
    cat_answer = post(
        sb.endpoint, signed_params(SEARCH, image_data=base64.b64encode(buffer.getvalue()).decode(), cat="1512")
    )
    assert [i["num_iid"] for i in cat_answer["image_search_response"]["items"]["item"]] == ["900000000002"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"num_iid": 1, "title": "x", "cat": "16", "image": "nope.png"}\n', "not found"),
        ('{"num_iid": 1, "title": "x"\n', "not valid JSON"),
        ('{"title": "x", "cat": "16", "image": "p0.png"}\n', "missing 'num_iid'"),
        ("", "no products"),
    ],
)
def test_bad_jsonl_catalogue_is_a_one_line_error(tmp_path, content, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "p0.png")
    path = tmp_path / "catalog.jsonl"
    path.write_text(content)
    with pytest.raises(CatalogError, match=message):
        load_jsonl(path)
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "0", "--catalog", str(path)],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def _record(**changes):
    return json.dumps({"num_iid": 1, "title": "x", "cat": "16", "image": "p0.png", **changes})


_BAD_LINES = {
    "text file as image": (_record(image="notes.txt"), "image file 'notes.txt' is not an image"),
    "directory as image": (_record(image="pics"), "image file 'pics' is not a file"),
    "truncated image": (_record(image="cut.png"), "cannot decode image"),
    "negative num_iid": (_record(num_iid=-5), "num_iid must be between 1 and"),
    "zero num_iid": (_record(num_iid=0), "num_iid must be between 1 and"),
    "word num_iid": (_record(num_iid="abc"), "num_iid must be a positive integer"),
    "non-ASCII digits": (_record(num_iid="١٢٣"), "num_iid must be a positive integer"),
    "5000-digit string num_iid": (_record(num_iid="9" * 5000), "num_iid must be a positive integer"),
    "5000-digit number num_iid": (
        _record(num_iid=0).replace('"num_iid": 0', '"num_iid": ' + "9" * 5000), "too many digits"
    ),
    "float num_iid": (_record(num_iid=1.5), "num_iid must be a positive integer, got float"),
    "boolean num_iid": (_record(num_iid=True), "num_iid must be a positive integer, got bool"),
    "NaN price": (_record(price=float("nan")), "NaN is not a JSON number"),
    "Infinity sales": (_record(sales=float("inf")), "Infinity is not a JSON number"),
    "NaN nested": ('{"num_iid": 1, "title": "x", "cat": "16", "image": "p0.png", "price": [-Infinity]}', "-Infinity"),
    "overflowing float": (_record(price=0.5).replace("0.5", "1e400"), "1e400 is not a finite number"),
}


@pytest.fixture
def bad_catalogue_dir(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "p0.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "pics").mkdir()
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:300])
    return tmp_path


@pytest.mark.parametrize("case", list(_BAD_LINES))
def test_unservable_jsonl_line_is_refused_at_load_naming_its_line(bad_catalogue_dir, case):
    line, message = _BAD_LINES[case]
    path = bad_catalogue_dir / "catalog.jsonl"
    path.write_text(_record(num_iid=7) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CatalogError) as raised:
        # Header checks happen while loading; a body that fails to decode, when the index is built.
        VisualIndex(load_jsonl(path), use_disk_cache=False)
    assert str(raised.value).startswith(f"{path}:2: ") and message in str(raised.value)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 300


@pytest.mark.parametrize("case", ["text file as image", "truncated image", "5000-digit string num_iid", "NaN price"])
def test_unservable_jsonl_catalogue_is_a_one_line_startup_error(bad_catalogue_dir, case):
    path = bad_catalogue_dir / "catalog.jsonl"
    path.write_text(_BAD_LINES[case][0] + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "0", "--catalog", str(path)],
        capture_output=True, text=True, timeout=30, cwd=REPO, check=False,
        env={**os.environ, "IMAGESEARCH_SANDBOX_CACHE": str(bad_catalogue_dir / "cache")},
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"{path}:1: " in result.stderr and "Traceback" not in result.stderr


def test_host_placeholder_is_only_filled_in_the_sandbox_own_pic_url(make_sandbox, tmp_path):
    records = [
        {"num_iid": 11, "title": "模板 {host} 标题", "seller_nick": "{host}店", "cat": "16", "image": "p0.png"},
        {"num_iid": 12, "title": "t", "pic_url": "//cdn.example/{host}/x.jpg", "cat": "16", "image": "p0.png"},
    ]
    path = write_catalogue(tmp_path, [(200, 0, 0)], records)
    sb = make_sandbox("--catalog", str(path))
    import base64

    image = base64.b64encode((tmp_path / "p0.png").read_bytes()).decode()
    items = post(sb.endpoint, signed_params(SEARCH, image_data=image))["image_search_response"]["items"]["item"]
    by_id = {item["num_iid"]: item for item in items}
    served_host = sb.url.split("//")[1]
    assert by_id[11]["title"] == "模板 {host} 标题" and by_id[11]["seller_nick"] == "{host}店"
    assert by_id[11]["pic_url"] == f"//{served_host}/img/11.jpg"
    assert by_id[12]["pic_url"] == "//cdn.example/{host}/x.jpg"


def test_features_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGESEARCH_SANDBOX_CACHE", str(tmp_path))
    records = [{"num_iid": n + 1, "title": "t", "cat": "16", "image": f"p{n}.png"} for n in range(3)]
    path = write_catalogue(tmp_path, [(200, 0, 0), (0, 200, 0), (0, 0, 200)], records)
    first = VisualIndex(load_jsonl(path))
    cached = list(tmp_path.glob("features-*.npy"))
    assert len(cached) == 1
    # A cached matrix is used as is (prove it by planting one), and a changed catalogue gets its own.
    np.save(cached[0], np.ones_like(first.features))
    assert np.array_equal(VisualIndex(load_jsonl(path)).features, np.ones_like(first.features))
    os.utime(tmp_path / "p0.png", ns=(1, 1))
    assert np.allclose(VisualIndex(load_jsonl(path)).features, first.features)
    assert len(list(tmp_path.glob("features-*.npy"))) == 2


def test_committed_demo_seeds_find_their_products(catalog):
    from sandbox.search import decode_image, image_features

    index = VisualIndex(catalog)
    seeds = sorted((REPO / "data" / "seeds").glob("photo_*.jpg"))
    assert 6 <= len(seeds) <= 8
    for seed in seeds:
        num_iid = seed.name.split("_")[1]
        ranking = index.rank(image_features(decode_image(seed.read_bytes())))
        assert num_iid in [catalog.products[i].num_iid for i in ranking[:5]], seed.name


def test_example_catalogue_loads_and_answers(make_sandbox):
    import base64

    path = REPO / "configs" / "catalog.example" / "catalog.jsonl"
    example = load_jsonl(path)
    assert len(example) == 20 and len(set(example.cats)) >= 8
    sb = make_sandbox("--catalog", str(path))
    product = example.products[4]
    image = base64.b64encode(product.image_path.read_bytes()).decode()
    response = post(sb.endpoint, signed_params(SEARCH, image_data=image))["image_search_response"]
    assert response["total_results"] == "20"
    assert str(response["items"]["item"][0]["num_iid"]) == product.num_iid
