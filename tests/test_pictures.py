"""The pictures' one URL, their fingerprint and the offer grouping (pipeline/pictures.py, pipeline/runs/offers.py)."""

from __future__ import annotations

import io
import random

import imagehash
import pytest
from PIL import Image

from pipeline.pictures import fingerprint, group, phash, picture_url
from pipeline.runs.offers import offer_ids
from sandbox.catalog import builtin_catalog, jpeg_bytes
from sandbox.offers import apply_variation, variation


@pytest.mark.parametrize(("given", "picture"), [
    ("https://img.alicdn.com/imgextra/i1/123/O1CN01abc.jpg_400x400.jpg", "https://img.alicdn.com/imgextra/i1/123/O1CN01abc.jpg"),
    ("https://img.alicdn.com/bao/uploaded/i4/x.jpg_.webp", "https://img.alicdn.com/bao/uploaded/i4/x.jpg"),
    ("https://g.alicdn.com/x.png_460x460q90.jpg_.webp", "https://g.alicdn.com/x.png"),
    ("https://img.alicdn.com/x.JPG_b.jpg", "https://img.alicdn.com/x.JPG"),
    ("https://img.alicdn.com/x.jpg", "https://img.alicdn.com/x.jpg"),
    ("http://127.0.0.1:8731/img/5501.jpg_400x400.jpg?v=2", "http://127.0.0.1:8731/img/5501.jpg?v=2"),
    ("https://example.com/pictures/x_large/y.jpg", "https://example.com/pictures/x_large/y.jpg"),
])
def test_a_cdn_size_or_format_is_the_picture_itself(given: str, picture: str) -> None:
    assert picture_url(given) == picture


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    return jpeg_bytes(img, quality)


def test_the_fingerprint_is_imagehash_phash_of_the_centre_and_its_colours() -> None:
    picture = builtin_catalog().products[3].image()
    pic_hash, colours = fingerprint(_jpeg(picture))
    assert len(pic_hash) == 16 and len(colours) == 96
    centre = Image.open(io.BytesIO(_jpeg(picture))).convert("RGB").crop((26, 26, 230, 230))
    assert imagehash.hex_to_hash(pic_hash) - imagehash.phash(centre) <= 2  # imagehash reads it back
    with pytest.raises(ValueError, match="not a picture"):
        fingerprint(b"<html>not found</html>")


def test_pic_hash_is_imagehash_phash_bit_for_bit() -> None:
    rng = random.Random(8)
    for product in builtin_catalog().products[::97]:
        img, quality = apply_variation(product.image(), variation(rng))
        img = Image.open(io.BytesIO(_jpeg(img, quality))).convert("RGB")
        for picture in (img, img.crop((10, 30, 200, 190)), img.resize((400, 400))):
            assert phash(picture) == str(imagehash.phash(picture))
    flat = Image.new("RGB", (64, 64), (200, 30, 30))  # every coefficient but one is 0: no rounding noise
    assert phash(flat) == str(imagehash.phash(flat))


def test_resellers_variations_group_with_their_picture_and_other_products_do_not() -> None:
    rng = random.Random(3)
    products = builtin_catalog().products[:40]
    hashes, colours, truth = [], [], []
    for index, product in enumerate(products):
        for _ in range(3):  # the product's own picture and two resellers' takes on it
            img, quality = apply_variation(product.image(), variation(rng))
            pic_hash, colour = fingerprint(_jpeg(img, quality))
            hashes.append(pic_hash)
            colours.append(colour)
            truth.append(index)
    hashes.append(None)  # a listing whose picture could not be fetched: an offer of its own
    colours.append(None)
    truth.append(-1)
    groups = group(hashes, colours)
    pairs = [(a, b) for a in range(len(truth)) for b in range(a + 1, len(truth))]
    together = sum(groups[a] == groups[b] for a, b in pairs if truth[a] == truth[b])
    wrong = sum(groups[a] == groups[b] for a, b in pairs if truth[a] != truth[b])
    assert wrong == 0
    assert together >= 0.85 * sum(truth[a] == truth[b] for a, b in pairs)
    assert groups[-1] == len(truth) - 1


def test_an_offer_keeps_its_id_across_runs() -> None:
    # Run 1: two groups, new ids from their smallest num_iid.
    first = offer_ids([[5, 9], [3]], {})
    assert first == ["o5", "o3"]
    # Run 2: a listing joins o5, another is new alone; the group keeps o5.
    previous = {5: "o5", 9: "o5", 3: "o3"}
    assert offer_ids([[1, 5, 9], [3], [7]], previous) == ["o5", "o3", "o7"]
    # A group split: the larger part keeps the id, the other gets a new one; o5 is never given twice.
    assert offer_ids([[5], [9, 11]], previous) == ["o5-2", "o5"]
    # Two groups merged: the id most of its listings had.
    assert offer_ids([[3, 5, 9]], previous) == ["o5"]
