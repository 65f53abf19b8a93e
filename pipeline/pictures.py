"""The listings' pictures: one URL per picture, a perceptual fingerprint of each, and offer groups.

On Taobao one product is sold by many shops, mostly with the same main picture re-uploaded: resized,
recompressed, with a shop's watermark or border, cut a little, its colours shifted. Two listings are one
*offer* when their pictures are near-duplicates:

- ``pic_hash``: the pHash (imagehash's ``phash``, bit for bit: the 8x8 lowest frequencies of a 32x32 DCT
  against their median, 64 bits, written as 16 hex digits, ``imagehash.hex_to_hash`` reads it back) of the
  picture's centre, its
  outer tenth on each side left out, where borders and corner watermarks are;
- ``pic_colour``: the centre's mean colour on a 4x4 grid (16 ``rrggbb``, row by row), which pHash, on grey
  levels, does not see.

Listings are grouped when their hashes are at most ``max_distance`` bits apart and their colours at most
``max_colour`` apart (root mean square over the grid, 0..255), and transitively (single linkage). A run
compares the listings a seed's search found together (pipeline/runs/offers.py): the same product's listings
come back together for the photo of it, and a run of 300,000 listings makes 5,000 pairs a seed, not 45
billion; two seeds that found one listing join their groups through it. The defaults were chosen on a
labelled set of resellers' variations and look-alike products (bench/bench_offers.py, another set than the
one it reports on).
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image

#: The part of each side of a picture left out of its fingerprint (borders, corner watermarks).
CENTRE_MARGIN = 0.1
#: Defaults of IMAGESEARCH_OFFER_MAX_DISTANCE and IMAGESEARCH_OFFER_MAX_COLOUR.
MAX_DISTANCE = 10
MAX_COLOUR = 12.0
#: Listings compared at once while grouping (a block x all pairs in memory).
_BLOCK = 1024
_GRID = 4
#: Taobao's CDN serves a picture at other sizes and formats by a suffix after its name:
#: ``.jpg_400x400.jpg``, ``.jpg_400x400q90.jpg``, ``.jpg_.webp``, ``.png_q50.jpg_.webp``, ``.jpg_b.jpg``.
_CDN_SUFFIX_RE = re.compile(r"(\.(?:jpe?g|png|gif|webp|bmp))(?:_[^/?#]*)$", re.IGNORECASE)


def picture_url(url: str) -> str:
    """``url`` without the CDN's size or format suffix: the one URL of a picture (``…/x.jpg_400x400.jpg`` and
    ``…/x.jpg_.webp`` are ``…/x.jpg``)."""
    base, sep, query = url.partition("?")
    return _CDN_SUFFIX_RE.sub(r"\1", base) + sep + query


class PictureError(ValueError):
    """Bytes that are not a picture Pillow can decode."""


#: pHash's DCT-II (SciPy's ``fftpack.dct``, unnormalised) of 32 values, as a matrix: 2 cos(pi k (2n + 1) / 64).
_DCT = 2 * np.cos(np.pi * np.arange(32)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)


def phash(img: Image.Image) -> str:
    """imagehash's ``phash`` (hash_size 8), as its ``str`` writes it: the picture in grey at 32x32 (Lanczos),
    its 2-D DCT, the 8x8 lowest frequencies above their median, row by row, as 16 hex digits. The same bits
    as imagehash (tests/test_pictures.py checks it), without the SciPy it imports for the DCT."""
    pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = np.round((_DCT @ pixels @ _DCT.T)[:8, :8], 6)  # SciPy's exact zeros are zeros here too
    bits = (low > np.median(low)).ravel()
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def fingerprint(data: bytes) -> tuple[str, str]:
    """``(pic_hash, pic_colour)`` of a picture's bytes; PictureError if they do not decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            opened.draft("RGB", (256, 256))
            img = opened.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PictureError(f"not a picture: {exc}") from None
    width, height = img.size
    centre = img.crop((round(width * CENTRE_MARGIN), round(height * CENTRE_MARGIN),
                       round(width * (1 - CENTRE_MARGIN)), round(height * (1 - CENTRE_MARGIN))))
    colours = np.asarray(centre.resize((_GRID, _GRID), Image.Resampling.BOX), dtype=np.uint8)
    return phash(centre), colours.tobytes().hex()


#: Bytes of a ``pic_colour`` (its hex digits: twice as many).
COLOUR_BYTES = 3 * _GRID * _GRID
#: Pairs whose colours are compared at once (2 x 48 floats a pair in memory).
_PAIR_CHUNK = 65_536


def group(hashes: list[str | None], colours: list[str | None], max_distance: int = MAX_DISTANCE,
          max_colour: float = MAX_COLOUR, pairs: list[tuple[int, int]] | None = None) -> list[int]:
    """Each listing's group (the smallest index in it): listings whose pictures are near-duplicates, by
    ``pic_hash`` and ``pic_colour``, transitively. Of ``pairs`` (indices) if given, else of every pair. A
    listing without a fingerprint is a group of its own."""
    bits, known, grid = fingerprint_arrays(hashes, colours)
    if pairs is not None:
        candidates = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    else:  # every pair, a block of rows at a time
        chunks = [np.zeros((0, 2), np.int64)]
        for start in range(0, len(hashes), _BLOCK):
            rows, cols = np.nonzero(np.bitwise_count(bits[start:start + _BLOCK, None] ^ bits[None, :]) <= max_distance)
            keep = cols > rows + start
            chunks.append(np.stack([rows[keep] + start, cols[keep]], axis=1))
        candidates = np.concatenate(chunks)
    a, b = near(bits, known, grid, candidates[:, 0], candidates[:, 1], max_distance, max_colour)
    return components(len(hashes), a, b).tolist()


def fingerprint_arrays(hashes: list[str | None], colours: list[str | None]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fingerprints as arrays: the hashes' 64 bits, whether each listing has both parts, and the colours
    (one row of COLOUR_BYTES a listing, zeros where it has none)."""
    known = np.array([bool(h and c) for h, c in zip(hashes, colours, strict=True)], dtype=bool)
    bits = np.array([int(h, 16) if h else 0 for h in hashes], dtype=np.uint64)
    grid = np.zeros((len(colours), COLOUR_BYTES), np.uint8)
    for index, colour in enumerate(colours):
        if colour:
            grid[index] = np.frombuffer(bytes.fromhex(colour), dtype=np.uint8)
    return bits, known, grid


def near(bits: np.ndarray, known: np.ndarray, grid: np.ndarray, a: np.ndarray, b: np.ndarray, max_distance: int,
         max_colour: float) -> tuple[np.ndarray, np.ndarray]:
    """Of the pairs ``(a[k], b[k])``, those of two fingerprinted listings whose pictures are near-duplicates."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ok = known[a] & known[b] & (np.bitwise_count(bits[a] ^ bits[b]) <= max_distance)
    a, b = a[ok], b[ok]
    keep = np.zeros(len(a), dtype=bool)
    for start in range(0, len(a), _PAIR_CHUNK):
        ga = grid[a[start:start + _PAIR_CHUNK]].astype(np.float32)
        gb = grid[b[start:start + _PAIR_CHUNK]].astype(np.float32)
        keep[start:start + _PAIR_CHUNK] = np.sqrt(((ga - gb) ** 2).mean(axis=1)) <= max_colour
    return a[keep], b[keep]


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected components of ``n`` listings joined by the pairs ``(a[k], b[k])``: each listing's
    component named by its smallest index. Each round hooks the label of each pair's end onto the smaller
    of the two (labels only go down, and stay indices of the component), then points every label at its
    label's label down to a fixed point; a handful of rounds however long a component's chain."""
    labels = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    while len(a):
        ra, rb = labels[a], labels[b]
        low = np.minimum(ra, rb)
        np.minimum.at(labels, ra, low)
        np.minimum.at(labels, rb, low)
        while True:  # point each label at its label's label, down to a fixed point
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels[a], labels[b]):
            break
    return labels
