"""The sandbox's service state, without HTTP or protocol: catalogue, visual index, uploads, pages."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from sandbox.catalog import Catalog, builtin_catalog, jpeg_bytes, load_jsonl, render_item
from sandbox.search import ImageDecodeError, VisualIndex, decode_image, image_features

logger = logging.getLogger(__name__)

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{40}$")
_IMG_PATH_RE = re.compile(r"/img/([^/]+?)\.jpg(?:_\d+x\d+\.jpg|_\.webp)?$")
#: A listing's picture as Taobao's CDN names its sizes and formats: ``<id>.jpg``, ``<id>.jpg_400x400.jpg``
#: (that size), ``<id>.jpg_.webp`` (WebP).
_CDN_NAME_RE = re.compile(r"([^/]+?)\.jpg(?:_(\d+)x(\d+)\.jpg|(_\.webp))?")
#: An uploaded picture: the sandbox's own ``/upload/<id>.jpg`` (taobao.upload.img), or the platform
#: CDN's ``/img/bao/uploaded/i4/<id>.jpg`` that Onebound's upload_img names.
_UPLOAD_PATH_RE = re.compile(r"/(?:upload|img/bao/uploaded/i4)/([0-9a-f]{40})\.jpg$")
#: Where Onebound's upload_img says an uploaded picture is (a protocol-relative platform CDN URL).
UPLOADED_CDN_URL = "//g-search3.alicdn.com/img/bao/uploaded/i4/{upload_id}.jpg"
_MAX_UPLOADS = 2048
_MAX_QUERY_CACHE = 256
_MAX_IMAGE_CACHE = 512

_BUILTIN_CACHE: dict[int, tuple[Catalog, VisualIndex]] = {}


class UnknownImageReference(ValueError):
    """``image_data`` names an image (URL or upload id) this sandbox never issued."""


class MalformedImageReference(UnknownImageReference):
    """``image_data`` / ``image_url`` looks like a URL but cannot be parsed as one (e.g. ``http://[::1/x``)."""


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]
    total_results: int
    page: int


class ImageSearchBackend:
    """Catalogue + index + uploaded images: what ``taobao.image.search`` and ``taobao.upload.img`` act on."""

    def __init__(self, catalog: Catalog, index: VisualIndex, page_size: int = 20, max_results: int = 200) -> None:
        self.catalog = catalog
        self.index = index
        self.page_size = page_size
        self.max_results = max_results
        #: upload id → (the JPEG served at /upload/<id>.jpg, features of the bytes as uploaded)
        self._uploads: OrderedDict[str, tuple[bytes, np.ndarray]] = OrderedDict()
        self._query_features: OrderedDict[str, np.ndarray] = OrderedDict()
        self._product_jpegs: OrderedDict[str, bytes] = OrderedDict()

    @classmethod
    def from_catalog_path(cls, path: Path | None, page_size: int = 20, max_results: int = 200) -> ImageSearchBackend:
        """Build from a JSON-lines catalogue, or the built-in one (shared in-process once built)."""
        if path is None:
            if 0 not in _BUILTIN_CACHE:
                catalog = builtin_catalog()
                _BUILTIN_CACHE[0] = (catalog, VisualIndex(catalog))
            catalog, index = _BUILTIN_CACHE[0]
        else:
            catalog = load_jsonl(path)
            index = VisualIndex(catalog)
        return cls(catalog, index, page_size=page_size, max_results=max_results)

    # -- images ---------------------------------------------------------------------------------

    def product_jpeg(self, num_iid: str) -> bytes | None:
        """The JPEG served at ``/img/<num_iid>.jpg`` (rendered on first request, then cached)."""
        cached = self._product_jpegs.get(num_iid)
        if cached is not None:
            self._product_jpegs.move_to_end(num_iid)
            return cached
        product = self.catalog.get(num_iid)
        if product is None:
            return None
        data = jpeg_bytes(product.image(), product.jpeg_quality)
        self._product_jpegs[num_iid] = data
        if len(self._product_jpegs) > _MAX_IMAGE_CACHE:
            self._product_jpegs.popitem(last=False)
        return data

    def cdn_picture(self, name: str) -> tuple[bytes, str] | None:
        """The picture ``/img/<name>`` serves, and its content type: a product's JPEG, a size of it
        (``<id>.jpg_400x400.jpg``, at most 2000 pixels a side) or a WebP of it (``<id>.jpg_.webp``)."""
        match = _CDN_NAME_RE.fullmatch(name)
        data = self.product_jpeg(match.group(1)) if match else None
        if match is None or data is None:
            return None
        if match.group(4) or match.group(2):
            img = Image.open(io.BytesIO(data))
            buffer = io.BytesIO()
            if match.group(4):
                img.save(buffer, "WEBP", quality=80)
                return buffer.getvalue(), "image/webp"
            size = (min(2000, int(match.group(2))), min(2000, int(match.group(3))))
            img.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=85)
            return buffer.getvalue(), "image/jpeg"
        return data, "image/jpeg"

    def upload_jpeg(self, upload_id: str) -> bytes | None:
        entry = self._uploads.get(upload_id)
        return None if entry is None else entry[0]

    def upload(self, data: bytes) -> str:
        """Store an image; returns its content-derived id (sha1 of the bytes).  Raises ImageDecodeError."""
        upload_id = hashlib.sha1(data).hexdigest()
        if upload_id not in self._uploads:
            img = decode_image(data)
            self._uploads[upload_id] = (jpeg_bytes(img), image_features(img))
            if len(self._uploads) > _MAX_UPLOADS:
                self._uploads.popitem(last=False)
        self._uploads.move_to_end(upload_id)
        return upload_id

    def _resolve(self, reference: str) -> tuple[bytes, np.ndarray | None] | None:
        """(image bytes, known features or None) behind an upload id or a sandbox ``/upload/...`` or
        ``/img/...`` URL, matched on the path whatever the host; None when it is not a reference."""
        reference = reference.strip()
        upload_id = reference if UPLOAD_ID_RE.match(reference) else None
        if upload_id is None:
            # Base64 JPEG starts with "/9j/", so a bare path must name one of our own directories.
            if not reference.startswith(("http://", "https://", "//", "/img/", "/upload/")):
                return None
            try:
                path = urlsplit(reference if not reference.startswith("//") else "http:" + reference).path
            except ValueError:
                # urlsplit refuses e.g. an unclosed IPv6 bracket: a bad reference from the client,
                # not a sandbox failure.
                shown = reference if len(reference) <= 100 else reference[:100] + "..."
                raise MalformedImageReference(f"not a valid URL: {shown!r}") from None
            if match := _IMG_PATH_RE.search(path):
                data = self.product_jpeg(match.group(1))
                if data is None:
                    raise UnknownImageReference(f"no catalogue product has num_iid {match.group(1)}")
                return data, None
            match = _UPLOAD_PATH_RE.search(path)
            if match is None:
                raise UnknownImageReference(
                    "image_data is a URL this sandbox did not issue; "
                    "upload external images with taobao.upload.img first"
                )
            upload_id = match.group(1)
        entry = self._uploads.get(upload_id)
        if entry is None:
            raise UnknownImageReference(f"no uploaded image has id {upload_id}")
        return entry

    def resolve_reference(self, reference: str) -> bytes | None:
        """The image bytes behind a sandbox-issued id or URL (see :meth:`_resolve`); None if not one."""
        resolved = self._resolve(reference)
        return None if resolved is None else resolved[0]

    def query_features(self, image_data: str) -> np.ndarray:
        """Features of ``image_data``: Base64 image bytes, an upload id, or a sandbox image URL.
        Raises ImageDecodeError or UnknownImageReference."""
        resolved = self._resolve(image_data)
        if resolved is not None and resolved[1] is not None:
            return resolved[1]
        data = decode_base64(image_data) if resolved is None else resolved[0]
        key = hashlib.sha1(data).hexdigest()
        features = self._query_features.get(key)
        if features is None:
            features = image_features(decode_image(data))
            self._query_features[key] = features
            if len(self._query_features) > _MAX_QUERY_CACHE:
                self._query_features.popitem(last=False)
        return features

    # -- search ---------------------------------------------------------------------------------

    def total_results(self, cat: str | None) -> int:
        return min(self.index.count(cat), self.max_results)

    def search(self, image_data: str, cat: str | None = None, page: int = 1, host: str = "127.0.0.1") -> SearchPage:
        """One page of the catalogue ranked by similarity to the image; past the end, an empty page."""
        if page < 1:
            raise ValueError("page must be >= 1")
        ranking = self.index.rank(self.query_features(image_data), cat or None)
        total = min(len(ranking), self.max_results)
        start = (page - 1) * self.page_size
        stop = min(start + self.page_size, total)
        items = [render_item(self.catalog.products[i], host) for i in ranking[start:stop]] if start < total else []
        return SearchPage(items=items, total_results=total, page=page)


def decode_base64(text: str) -> bytes:
    """Lenient Base64: accepts a ``data:`` URI prefix, whitespace, missing padding, ``+`` sent as space
    and the URL-safe alphabet.  Raises ImageDecodeError."""
    text = text.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    # A '+' that was not percent-encoded in a form body arrives as a space.
    text = "".join(text.replace(" ", "+").split())
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDecodeError("image_data is neither Base64 nor an image reference") from None
    if not data:
        raise ImageDecodeError("image_data is empty")
    return data
