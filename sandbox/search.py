"""Visual similarity search over the catalogue: pixel features (numpy/Pillow only), cached, cosine-ranked."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from threadpoolctl import ThreadpoolController

from sandbox.catalog import ACCEPTED_FORMATS, MAX_PIXELS, Catalog

logger = logging.getLogger(__name__)

#: Side of the square every image is reduced to before features are taken.
WORK_SIZE = 64

_HUE_BINS, _SAT_BINS, _VAL_BINS, _GREY_BINS = 12, 3, 3, 4
_THUMB = 8
_ORIENT_BINS, _GRID = 8, 2
#: Relative weights of the three feature blocks in the cosine similarity.
_WEIGHTS = {"colour": 1.0, "layout": 1.0, "edges": 0.6}


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[object]:
    """Within it, numpy's BLAS runs on the calling thread only (8 µs to enter and leave).

    OpenBLAS splits a product over the catalogue's rows between threads that then spin, waiting for
    more: at a search every few ms they never sleep, and took a whole core from the crawl or service
    beside the sandbox (7.2 ms of CPU a search for 3.3 ms of work, bench/bench_serve.py's machine) to
    save 0.3 ms of wall time a search.
    """
    return _blas().limit(limits=1, user_api="blas")


class ImageDecodeError(ValueError):
    """Bytes that are not an accepted, decodable, reasonably sized image."""


def decode_image(data: bytes) -> Image.Image:
    """Decode ``data`` to an RGB image, refusing unsupported formats, bad data and decompression bombs."""
    if not data:
        raise ImageDecodeError("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ACCEPTED_FORMATS:
                raise ImageDecodeError(f"unsupported image format {img.format}")
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(f"image too large ({width}x{height} pixels)")
            if img.format == "JPEG":
                # Decoding at reduced scale is much faster and loses nothing at WORK_SIZE.
                img.draft("RGB", (WORK_SIZE * 4, WORK_SIZE * 4))
            img.load()
            return img.convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image in a supported format (JPEG, PNG, WebP, BMP, GIF)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from None


def _reduce(img: Image.Image) -> np.ndarray:
    """RGB float32 array (WORK_SIZE, WORK_SIZE, 3) in 0..1."""
    small = img.convert("RGB").resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32) / 255.0


def _colour_histograms(rgb: np.ndarray) -> np.ndarray:
    """Per image: hue x saturation x value histogram of coloured pixels plus grey levels of greyish ones."""
    n = rgb.shape[0]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    delta = mx - mn
    sat = delta / np.maximum(mx, 1e-6)
    safe = np.maximum(delta, 1e-6)
    hue = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    ) / 6.0
    coloured = (sat > 0.2) & (mx > 0.12)
    # Hue is split linearly between the two nearest (circular) bins so a small hue or
    # brightness shift moves weight gradually instead of flipping pixels across a bin edge.
    h_pos = hue * _HUE_BINS - 0.5
    h_low = np.floor(h_pos)
    h_frac = (h_pos - h_low).astype(np.float32)
    h_bin0 = h_low.astype(np.int64) % _HUE_BINS
    h_bin1 = (h_bin0 + 1) % _HUE_BINS
    s_bin = np.clip(((sat - 0.2) / 0.8 * _SAT_BINS).astype(np.int64), 0, _SAT_BINS - 1)
    v_bin = np.minimum((mx * _VAL_BINS).astype(np.int64), _VAL_BINS - 1)
    n_colour = _HUE_BINS * _SAT_BINS * _VAL_BINS
    grey_bin = n_colour + np.minimum((mx * _GREY_BINS).astype(np.int64), _GREY_BINS - 1)
    bin0 = np.where(coloured, (h_bin0 * _SAT_BINS + s_bin) * _VAL_BINS + v_bin, grey_bin)
    bin1 = np.where(coloured, (h_bin1 * _SAT_BINS + s_bin) * _VAL_BINS + v_bin, grey_bin)
    weight1 = np.where(coloured, h_frac, 0.0)
    width = n_colour + _GREY_BINS
    offset = (np.arange(n) * width)[:, None]
    bins = np.concatenate([bin0.reshape(n, -1) + offset, bin1.reshape(n, -1) + offset], axis=1)
    weights = np.concatenate([(1.0 - weight1).reshape(n, -1), weight1.reshape(n, -1)], axis=1)
    hist = np.bincount(bins.ravel(), weights=weights.ravel(), minlength=n * width)
    hist = hist.reshape(n, width).astype(np.float32)
    # Square root (Hellinger) damps the dominance of the background colour.
    return np.sqrt(hist / np.maximum(hist.sum(axis=1, keepdims=True), 1.0))


def _layouts(rgb: np.ndarray) -> np.ndarray:
    """Per image: an 8x8 colour thumbnail centred on its mean (where the colours are; brightness-robust)."""
    n, k = rgb.shape[0], WORK_SIZE // _THUMB
    thumb = rgb.reshape(n, _THUMB, k, _THUMB, k, 3).mean(axis=(2, 4)).reshape(n, -1)
    return thumb - thumb.mean(axis=1, keepdims=True)


def _edge_histograms(rgb: np.ndarray) -> np.ndarray:
    """Per image: gradient-orientation histograms over a 2x2 grid (a tiny HOG)."""
    n = rgb.shape[0]
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy = np.zeros_like(grey)
    gx = np.zeros_like(grey)
    gy[:, 1:-1, :] = grey[:, 2:, :] - grey[:, :-2, :]
    gx[:, :, 1:-1] = grey[:, :, 2:] - grey[:, :, :-2]
    magnitude = np.hypot(gx, gy)
    orientation = (np.arctan2(gy, gx) % np.pi) / np.pi
    o_bin = np.minimum((orientation * _ORIENT_BINS).astype(np.int64), _ORIENT_BINS - 1)
    cell = WORK_SIZE // _GRID
    cells = (np.arange(WORK_SIZE) // cell)
    width = _GRID * _GRID * _ORIENT_BINS
    index = (cells[:, None] * _GRID + cells[None, :]) * _ORIENT_BINS + o_bin
    index = index.reshape(n, -1) + (np.arange(n) * width)[:, None]
    hist = np.bincount(index.ravel(), weights=magnitude.ravel(), minlength=n * width)
    return hist.reshape(n, width).astype(np.float32)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def batch_features(images: list[Image.Image]) -> np.ndarray:
    """Unit-length feature vectors (one row per image); cosine similarity is a dot product."""
    rgb = np.stack([_reduce(img) for img in images])
    parts = [
        _WEIGHTS["colour"] * _unit_rows(_colour_histograms(rgb)),
        _WEIGHTS["layout"] * _unit_rows(_layouts(rgb)),
        _WEIGHTS["edges"] * _unit_rows(_edge_histograms(rgb)),
    ]
    return _unit_rows(np.concatenate(parts, axis=1)).astype(np.float32)


def image_features(img: Image.Image) -> np.ndarray:
    """The unit-length feature vector of one image."""
    return batch_features([img])[0]


def _code_fingerprint() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cache_dir() -> Path:
    """``$IMAGESEARCH_SANDBOX_CACHE`` or ``~/.cache/imagesearch-sandbox``."""
    configured = os.environ.get("IMAGESEARCH_SANDBOX_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagesearch-sandbox"


class VisualIndex:
    """Feature matrix of a catalogue and the ranking of a query against it."""

    def __init__(self, catalog: Catalog, use_disk_cache: bool = True) -> None:
        self.catalog = catalog
        self.features = self._load_or_compute(use_disk_cache)
        # Tie-break on num_iid (numerically where it is a number): same query, same ranking.
        keys = [_num_iid_key(p.num_iid) for p in catalog]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._tiebreak = np.empty(len(keys), dtype=np.int64)
        self._tiebreak[order] = np.arange(len(keys))
        cats = np.array(catalog.cats)
        self._cat_masks = {cat: cats == cat for cat in set(catalog.cats)}

    def _load_or_compute(self, use_disk_cache: bool) -> np.ndarray:
        key = hashlib.sha256(f"{self.catalog.fingerprint}:{_code_fingerprint()}".encode()).hexdigest()[:32]
        path = cache_dir() / f"features-{key}.npy"
        if use_disk_cache:
            try:
                features = np.load(path)
                if features.shape[0] == len(self.catalog):
                    logger.debug("loaded %d cached features from %s", len(features), path)
                    return features
            except (OSError, ValueError):
                pass
        chunks = [
            batch_features([p.image() for p in self.catalog.products[i : i + 256]])
            for i in range(0, len(self.catalog), 256)
        ]
        features = np.concatenate(chunks)
        if use_disk_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
                    np.save(tmp, features)
                os.replace(tmp.name, path)
            except OSError as exc:
                logger.warning("cannot write the feature cache %s: %s", path, exc)
        return features

    def rank(self, query: np.ndarray, cat: str | None = None) -> np.ndarray:
        """Catalogue indices of the (cat-filtered) products, most similar first, ties by num_iid."""
        return self.scored(query, cat)[0]

    def scored(self, query: np.ndarray, cat: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``rank``'s indices and, for each, its similarity to the query (cosine, rounded to 6 places)."""
        with one_blas_thread():
            scores = self.features @ query
        # Rounding makes near-identical scores true ties, so ties break by num_iid, not float noise.
        scores = np.round(scores, 6)
        if cat is None:
            candidates = np.arange(len(scores))
        else:
            mask = self._cat_masks.get(cat)
            if mask is None:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            candidates = np.flatnonzero(mask)
        order = np.lexsort((self._tiebreak[candidates], -scores[candidates]))
        return candidates[order], scores[candidates[order]]

    def count(self, cat: str | None = None) -> int:
        if cat is None:
            return len(self.catalog)
        mask = self._cat_masks.get(cat)
        return 0 if mask is None else int(mask.sum())


def _num_iid_key(num_iid: str) -> tuple[int, int, str]:
    return (0, int(num_iid), "") if num_iid.isdigit() else (1, 0, num_iid)
