"""The dataset's tables (products, matches, seeds, runs, products_latest) and the Scrapy items the spider
yields, defined once."""

from __future__ import annotations

from items.schema import MATCHES, PRODUCTS, PRODUCTS_LATEST, RUNS, SEEDS, SNAPSHOTS, TABLES, Column, Table
from items.scrapy_items import ProductHit, SeedSummary, item_kind

__all__ = [
    "Column",
    "Table",
    "PRODUCTS",
    "MATCHES",
    "SEEDS",
    "RUNS",
    "PRODUCTS_LATEST",
    "TABLES",
    "SNAPSHOTS",
    "ProductHit",
    "SeedSummary",
    "item_kind",
]
