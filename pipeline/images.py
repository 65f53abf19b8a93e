"""Seed images before sending: read, hash, decode, orient, convert to an RGB JPEG of bounded size; URL routing."""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import logging
import math
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.crop import Box, box_problem, format_box, subject_box
from pipeline.errors import ImageRejected

logger = logging.getLogger(__name__)


def _register_optional_plugins() -> None:
    """HEIC/HEIF photos (what iPhones take) open once pillow-heif is installed; it is optional."""
    try:
        heif = importlib.import_module("pillow_heif")
    except ImportError:
        return
    heif.register_heif_opener()


_register_optional_plugins()

JPEG_QUALITY = 90
#: The EXIF tag of the orientation, and its values that turn the picture a quarter (width and height swap).
_ORIENTATION = 0x0112
_AXES_SWAPPED = frozenset({5, 6, 7, 8})
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class PreparedImage:
    """The JPEG to send and what it came from (``sha256`` of the bytes as read, original size)."""

    jpeg: bytes
    sha256: str
    original_size: tuple[int, int]
    #: The JPEG's own size (after orientation, the crop and the cap on its longest side).
    size: tuple[int, int]
    #: The box of the original photo (EXIF orientation applied) the JPEG shows; None: the whole photo.
    region: Box | None = None
    #: Where the box came from: ``given`` (the seed's region), ``auto`` (IMAGESEARCH_CROP=auto) or ``none``.
    region_source: str = "none"
    #: The original photo's size with its EXIF orientation applied (what a region's pixels are of).
    oriented_size: tuple[int, int] | None = None

    def base64(self) -> str:
        return base64.b64encode(self.jpeg).decode("ascii")


@dataclass(frozen=True)
class ImageRef:
    """A seed image as a call carries it until it is sent: where its bytes are, not the bytes.

    The picture a call sends is prepared (``prepare_image``) from the file when the call leaves
    (pipeline/components/handlers.py), so a crawl of thousands of seeds holds no picture while calls wait for
    their quota slot. A file that changed since the seed was read (other bytes, other content) is
    refused rather than searched in its place.

    ``ImageRef.checked(prepared, ...)`` is the other kind: a picture prepared already, held in
    memory, which the call sends as it is. The search service checks a caller's photo by preparing
    it (in a thread), and that one decode is the picture its calls send.
    """

    path: Path | None
    sha256: str
    max_side: int
    max_pixels: int
    prepared: PreparedImage | None = field(default=None, repr=False, compare=False)
    #: The box of the photo to send (the seed's region, or the subject IMAGESEARCH_CROP=auto found), else None.
    region: Box | None = None

    @classmethod
    def checked(cls, prepared: PreparedImage, max_side: int, max_pixels: int) -> ImageRef:
        """The reference of a picture ``prepare_image`` made with these bounds: sent as it is."""
        return cls(None, prepared.sha256, max_side, max_pixels, prepared)

    @property
    def identity(self) -> str:
        """What the prepared picture depends on (the bytes and the bounds), for a call's key."""
        identity = f"sha256:{self.sha256};side:{self.max_side};pixels:{self.max_pixels};quality:{JPEG_QUALITY}"
        if self.region is not None:
            identity += f";region:{format_box(self.region)}"
        return identity

    def prepare(self) -> PreparedImage:
        """The picture to send; ImageRejected if it cannot be read or is no longer the one the seed was."""
        if self.prepared is not None:
            return self.prepared
        assert self.path is not None, "an ImageRef has a path or its prepared picture"
        data = read_image_file(self.path)
        if sha256_hex(data) != self.sha256:
            raise ImageRejected("image_changed", f"{self.path} changed while the crawl ran: run again to search it")
        return prepare_image(data, self.max_side, self.max_pixels, self.region)

    def __repr__(self) -> str:
        where = "checked" if self.path is None else repr(str(self.path))
        return f"ImageRef({where}, sha256={self.sha256[:12]}...)"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_image_file(path: Path) -> bytes:
    """The file's bytes; ImageRejected ``file_not_found`` / ``unreadable_file``."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageRejected("file_not_found", f"no such file: {path}") from None
    except OSError as exc:
        raise ImageRejected("unreadable_file", f"cannot read {path}: {exc.strerror or exc}") from None


_PILLOW_LIMIT = threading.Lock()
# Pillow warns of a picture over Image.MAX_IMAGE_PIXELS, which is never below IMAGESEARCH_MAX_IMAGE_PIXELS
# (_allow_pillow): such a picture is refused with image_too_large, which says it better. Filtered once here,
# not with warnings.catch_warnings around each decode: that swaps the process's filters and is not
# thread-safe, and the search service decodes in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _allow_pillow(max_pixels: int) -> None:
    """Pillow's own bomb check (twice Image.MAX_IMAGE_PIXELS, process-wide) never refuses what
    ``max_pixels`` allows: it is raised to it when lower, and never lowered, since other threads
    (the search service's) may be decoding under it. Our own check refuses at ``max_pixels``."""
    with _PILLOW_LIMIT:
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def prepare_image(data: bytes, max_side: int = 1024, max_pixels: int = 89_478_485, region: Box | None = None,
                  crop: str = "none") -> PreparedImage:
    """Decode ``data`` and re-encode it as what the gateway should see; raises ImageRejected.

    EXIF orientation is applied, any mode (CMYK, 16-bit, palette, alpha) becomes RGB on white,
    animated images give their first frame, and the longest side is capped at ``max_side``.
    Images over ``max_pixels`` are refused before being decoded (decompression bombs). ``region`` (a box of
    the oriented photo) is cut out and sent instead of the whole photo (``bad_region`` when it reaches
    outside it); without one, ``crop="auto"`` cuts out the subject pipeline.crop finds, if it finds one.

    Memory: a JPEG is decoded at the smallest of Pillow's draft scales (1/2, 1/4, 1/8) whose
    longest side is still >= ``max_side``, so at most (2 x max_side)^2 pixels, about 12 MB at 1024;
    other formats are decoded whole, at most ``max_pixels`` pixels of 4 bytes (plus ``data``).
    """
    digest = sha256_hex(data)
    if not data:
        raise ImageRejected("unreadable_image", "empty file (0 bytes)")
    _allow_pillow(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageRejected(
                    "image_too_large",
                    f"{width}x{height} is {width * height} pixels, over IMAGESEARCH_MAX_IMAGE_PIXELS={max_pixels}",
                )
            img.seek(0)  # animated GIF/WebP/APNG: the first frame
            oriented = (height, width) if img.getexif().get(_ORIENTATION, 1) in _AXES_SWAPPED else (width, height)
            if region is not None and (problem := box_problem(region, oriented)):
                raise ImageRejected("bad_region", problem)
            longest = max(region[2] - region[0], region[3] - region[1]) if region else max(width, height)
            if longest > max_side:
                # A JPEG decodes at 1/2, 1/4 or 1/8 scale, the smallest whose picture (or region) is still
                # >= max_side: a 24 MP photo costs a few MB to prepare, not 72. Other formats decode whole.
                scale = max_side / longest
                img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
            img.load()
            # In place, and to_rgb keeps an RGB picture as it is: no copy of the pixels is made for nothing
            # (the JPEG is encoded before the with block closes the image).
            ImageOps.exif_transpose(img, in_place=True)
            rgb = to_rgb(img)
            searched, source = _searched_box(rgb, oriented, region, crop)
            if searched is not None:
                factor = rgb.size[0] / oriented[0]
                rgb = rgb.crop(tuple(round(value * factor) for value in searched))  # type: ignore[arg-type]
            if max(rgb.size) > max_side:
                rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            rgb.save(out, "JPEG", quality=JPEG_QUALITY)
            size = rgb.size
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected("image_too_large", f"over IMAGESEARCH_MAX_IMAGE_PIXELS={max_pixels}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageRejected("unreadable_image", "not an image in a format Pillow can decode") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise anything (NotImplementedError for odd DDS, ...)
        raise ImageRejected("unreadable_image", f"cannot decode image: {type(exc).__name__}: {exc}") from None
    return PreparedImage(out.getvalue(), digest, (width, height), size, searched, source, oriented)


def _searched_box(img: Image.Image, oriented: tuple[int, int], region: Box | None,
                  crop: str) -> tuple[Box | None, str]:
    """The box of the oriented original to search (``img`` is it, decoded at some scale), and its source."""
    if region is not None:
        return region, "given"
    if crop != "auto" or (found := subject_box(img)) is None:
        return None, "none"
    factor = oriented[0] / img.size[0]
    left, top, right, bottom = (round(value * factor) for value in found)
    return (left, top, min(right, oriented[0]), min(bottom, oriented[1])), "auto"


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` in RGB (``img`` itself when it is RGB already): deep modes scaled to 8 bits, transparency
    flattened onto white."""
    if img.mode.startswith("I;16"):
        # 16 bits a sample: 65535 is white, whatever the picture's own range.
        values = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    elif img.mode in ("I", "F"):
        # 32-bit integer or float samples have no fixed white: scale the picture's own range when it exceeds 8 bits.
        values = np.asarray(img, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if top > 255:
            values = values * (255.0 / top)
        img = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def is_platform_cdn(url: str, host_patterns: Iterable[str]) -> bool:
    """True if ``url``'s host matches one of ``host_patterns`` (fnmatch, case-insensitive), e.g. ``*.alicdn.com``."""
    host = (urlsplit(url).hostname or "").lower()
    return bool(host) and any(fnmatchcase(host, pattern.strip().lower()) for pattern in host_patterns)
