"""Write the example JSON-lines catalogue: ``python -m sandbox.example_catalog configs/catalog.example``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sandbox.catalog import ITEM_FIELDS, builtin_catalog

logger = logging.getLogger(__name__)

EXAMPLE_SIZE = 20


def write_example_catalog(directory: Path, size: int = EXAMPLE_SIZE) -> Path:
    """``catalog.jsonl`` plus ``images/<num_iid>.jpg``: ``size`` products of the built-in catalogue,
    spread over its categories, with the API fields as held (pic_url left to the sandbox's default)."""
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    catalog = builtin_catalog()
    step = len(catalog) // size
    lines = []
    for product in catalog.products[::step][:size]:
        image_name = f"images/{product.num_iid}.jpg"
        product.image().resize((128, 128)).save(directory / image_name, "JPEG", quality=80)
        record = {name: product.fields[name] for name in ITEM_FIELDS if name != "pic_url"}
        record.update({"cat": product.cat, "image": image_name})
        lines.append(json.dumps(record, ensure_ascii=False))
    path = directory / "catalog.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.example_catalog", description=__doc__)
    parser.add_argument("directory", type=Path, nargs="?", default=Path("configs/catalog.example"))
    print(write_example_catalog(parser.parse_args().directory))


if __name__ == "__main__":
    main()
