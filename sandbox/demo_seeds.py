"""Write demo product photos derived from the built-in catalogue: ``python -m sandbox.demo_seeds data/seeds``."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

from sandbox.catalog import builtin_catalog

logger = logging.getLogger(__name__)

#: (catalogue index, how the "photo" differs from the listing picture).
DEMO_SEEDS: tuple[tuple[int, str], ...] = (
    (3, "as-is"), (450, "cropped"), (777, "recompressed"), (1100, "rotated"),
    (1400, "brighter"), (1750, "cropped"), (2050, "blurred"), (2400, "rescaled"),
)


def _photo(img: Image.Image, how: str, rng: random.Random) -> tuple[Image.Image, int]:
    quality = 85
    if how == "cropped":
        w, h = img.size
        img = img.crop((int(w * 0.08), int(h * 0.05), int(w * 0.93), int(h * 0.9)))
    elif how == "recompressed":
        quality = 45
    elif how == "rotated":
        img = img.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(240, 240, 240))
    elif how == "brighter":
        img = ImageEnhance.Brightness(img).enhance(1.08)
    elif how == "blurred":
        img = img.filter(ImageFilter.GaussianBlur(1.2))
    elif how == "rescaled":
        img = img.resize((400, 400), Image.Resampling.BICUBIC)
    return img, quality


def write_demo_seeds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    catalog = builtin_catalog()
    rng = random.Random(7)
    written = []
    for index, how in DEMO_SEEDS:
        product = catalog.products[index]
        img, quality = _photo(product.image(), how, rng)
        path = directory / f"photo_{product.num_iid}_{how}.jpg"
        img.convert("RGB").save(path, "JPEG", quality=quality)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo_seeds", description=__doc__)
    parser.add_argument("directory", type=Path, nargs="?", default=Path("data/seeds"))
    args = parser.parse_args()
    for path in write_demo_seeds(args.directory):
        print(path)


if __name__ == "__main__":
    main()
