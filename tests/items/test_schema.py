"""The table schemas: one source of truth, and docs/schema.md generated from it and up to date."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from items import TABLES, ProductHit, SeedSummary
from items.docs import render
from items.schema import FEED_TABLES, HITS, MATCHES, PRODUCTS, STAGED_SEEDS

REPO = Path(__file__).resolve().parents[2]


def test_docs_schema_md_is_up_to_date() -> None:
    committed = (REPO / "docs" / "schema.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/schema.md is stale: run `python -m items.docs > docs/schema.md`"


def test_every_column_is_documented_in_the_docs() -> None:
    text = render()
    for table in (*TABLES.values(), *FEED_TABLES.values()):
        assert f"## `{table.name}`" in text
        for column in table.columns:
            assert f"| `{column.name}` | `{column.type}` |" in text


def test_every_staged_column_is_an_item_field_and_every_table_is_built_from_them() -> None:
    assert set(HITS.column_names) <= set(ProductHit.fields)
    assert set(STAGED_SEEDS.column_names) <= set(SeedSummary.fields)
    # products and matches are built from the hits: the winning hit's seed is first_seed_id.
    # ... and offer_id, the offer group the commit works out from the pictures' fingerprints.
    assert set(PRODUCTS.column_names) - {"first_seed_id", "offer_id"} <= set(HITS.column_names)
    # ... and fused_rank, computed at the commit over a seed's views.
    assert set(MATCHES.column_names) - {"fused_rank", "offer_id"} <= set(HITS.column_names)


def test_arrow_schemas_carry_the_docs() -> None:
    for table in TABLES.values():
        schema = table.arrow_schema
        assert schema.metadata[b"table"] == table.name.encode()
        for column in table.columns:
            field = schema.field(column.name)
            assert field.metadata[b"doc"] == column.doc.encode()
            assert field.nullable is column.nullable
            assert not isinstance(field.type, pa.ExtensionType)
