"""Cluttered photos of catalogue products, for the tests and bench/bench_matches.py: the product's picture
pasted at a random scale and place onto a textured background, recompressed as a phone would. The box it
was pasted in is the photo's true region."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

from sandbox.catalog import Product

#: Background textures: diagonal stripes, smooth colour blobs, a noisy checkerboard.
TEXTURES = ("stripes", "blobs", "checker")


def background(size: tuple[int, int], rng: random.Random, texture: str | None = None) -> Image.Image:
    """A textured RGB background of ``size``."""
    width, height = size
    texture = texture or rng.choice(TEXTURES)
    noise = np.random.default_rng(rng.randrange(1 << 30))
    ys, xs = np.mgrid[0:height, 0:width]
    if texture == "stripes":
        period = rng.randrange(8, 40)
        one, two = (np.array([rng.randrange(256) for _ in range(3)]) for _ in range(2))
        pixels = np.where((((xs + ys) // period) % 2)[..., None] == 0, one, two)
    elif texture == "blobs":
        small = noise.integers(0, 256, (height // 32 + 1, width // 32 + 1, 3)).astype(np.uint8)
        pixels = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))
    else:
        tile = rng.randrange(10, 30)
        pixels = ((xs // tile + ys // tile) % 2)[..., None] * 80 + 90 + noise.normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def cluttered_photo(product: Product, rng: random.Random, side: int = 640, scale: tuple[float, float] = (0.3, 0.55),
                    quality: int = 80) -> tuple[bytes, tuple[int, int, int, int]]:
    """A JPEG of ``product``'s picture pasted, ``scale`` of the frame wide, onto a ``side`` x ``side`` textured
    background; and the box it is in (left, top, right, bottom)."""
    frame = background((side, side), rng)
    picture = product.image().convert("RGB")
    width = int(side * rng.uniform(*scale))
    height = int(width * picture.height / picture.width)
    left, top = rng.randrange(0, side - width), rng.randrange(0, side - height)
    frame.paste(picture.resize((width, height), Image.Resampling.BILINEAR), (left, top))
    buffer = io.BytesIO()
    frame.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue(), (left, top, left + width, top + height)
