"""The dataset's tables (products, matches, seeds) and the Scrapy items the spider yields, defined once."""

from __future__ import annotations

from items.schema import MATCHES, PRODUCTS, SEEDS, TABLES, Column, Table
from items.scrapy_items import ProductHit, SeedSummary, item_kind

__all__ = [
    "Column",
    "Table",
    "PRODUCTS",
    "MATCHES",
    "SEEDS",
    "TABLES",
    "ProductHit",
    "SeedSummary",
    "item_kind",
]
