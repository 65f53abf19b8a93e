"""The region a seed searches: boxes as a manifest writes them, the subject detector, the cut in prepare_image."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from pipeline.crop import box_problem, format_box, parse_box, subject_box
from pipeline.errors import ImageRejected
from pipeline.images import prepare_image
from sandbox.catalog import builtin_catalog
from sandbox.cluttered import cluttered_photo


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_a_box_is_left_top_right_bottom_in_whole_pixels() -> None:
    assert parse_box(" 120, 40,860 ,900 ") == (120, 40, 860, 900)
    assert format_box((120, 40, 860, 900)) == "120,40,860,900"
    for text, says in [("1,2,3", "left,top,right,bottom"), ("1.5,2,3,4", "whole pixels"), ("-1,0,5,5", "whole"),
                       ("10,10,5,20", "empty"), ("0,0,0,0", "empty")]:
        with pytest.raises(ValueError, match=says):
            parse_box(text)
    assert box_problem((0, 0, 640, 480), (640, 480)) is None
    assert "outside the photo, which is 640x480" in (box_problem((0, 0, 641, 480), (640, 480)) or "")


def test_the_detector_finds_a_product_pasted_into_a_cluttered_frame() -> None:
    catalog, rng = builtin_catalog(), random.Random(11)
    overlaps = []
    for k in range(12):
        data, truth = cluttered_photo(catalog.products[37 * k], rng)
        found = subject_box(Image.open(io.BytesIO(data)))
        overlaps.append(_iou(found, truth) if found else 0.0)
    # Most photos: most of the box found (the detector is judged on recall in bench/bench_matches.py).
    assert sorted(overlaps)[len(overlaps) // 2] > 0.5, overlaps


def test_a_photo_the_subject_fills_or_a_plain_one_is_searched_whole() -> None:
    assert subject_box(Image.new("RGB", (300, 200), "white")) is None
    full = Image.new("RGB", (300, 300), "white")
    full.paste(Image.new("RGB", (290, 290), "navy"), (5, 5))
    assert subject_box(full) is None


def _jpeg(img: Image.Image, orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def test_a_region_is_cut_from_the_photo_as_it_is_seen_with_its_exif_orientation() -> None:
    # Stored 400x200, shown turned a quarter (orientation 6: 200 wide, 400 high); red in the shown top half.
    stored = Image.new("RGB", (400, 200), "blue")
    stored.paste(Image.new("RGB", (200, 200), "red"), (0, 0))  # the left half: the top half once turned
    prepared = prepare_image(_jpeg(stored, orientation=6), max_side=1024, max_pixels=10_000_000,
                             region=(0, 0, 200, 200))
    picture = Image.open(io.BytesIO(prepared.jpeg)).convert("RGB")
    assert prepared.size == picture.size == (200, 200) and prepared.region == (0, 0, 200, 200)
    assert prepared.region_source == "given" and prepared.oriented_size == (200, 400)
    red, green, blue = picture.getpixel((100, 100))
    assert red > 200 and blue < 60, (red, green, blue)


def test_a_large_photos_region_keeps_its_detail_and_one_outside_it_is_refused() -> None:
    photo = Image.new("RGB", (4000, 3000), "white")
    photo.paste(Image.new("RGB", (800, 600), "green"), (2000, 1000))
    data = _jpeg(photo)
    prepared = prepare_image(data, max_side=1024, max_pixels=20_000_000, region=(2000, 1000, 2800, 1600))
    # The 800x600 box is sent at its own size (it is under the cap), not cut from a 1024-wide copy of the whole.
    assert prepared.size == (800, 600)
    whole = prepare_image(data, max_side=1024, max_pixels=20_000_000)
    assert whole.size == (1024, 768) and whole.region is None and whole.region_source == "none"
    with pytest.raises(ImageRejected, match="outside the photo, which is 4000x3000") as refused:
        prepare_image(data, max_side=1024, max_pixels=20_000_000, region=(3500, 0, 4001, 100))
    assert refused.value.reason == "bad_region"


def test_auto_crop_cuts_out_the_subject_and_says_so() -> None:
    data, truth = cluttered_photo(builtin_catalog().products[5], random.Random(3))
    prepared = prepare_image(data, max_side=1024, max_pixels=10_000_000, crop="auto")
    assert prepared.region_source == "auto" and prepared.region is not None
    assert _iou(prepared.region, truth) > 0.5 and prepared.size == (prepared.region[2] - prepared.region[0],
                                                                    prepared.region[3] - prepared.region[1])
