"""The table schemas: one source of truth, and docs/schema.md generated from it and up to date."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from items import TABLES, ProductHit, SeedSummary
from items.docs import render

REPO = Path(__file__).resolve().parents[1]


def test_docs_schema_md_is_up_to_date() -> None:
    committed = (REPO / "docs" / "schema.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/schema.md is stale: run `python -m items.docs > docs/schema.md`"


def test_every_column_is_documented_in_the_docs() -> None:
    text = render()
    for table in TABLES.values():
        assert f"## `{table.name}`" in text
        for column in table.columns:
            assert f"| `{column.name}` | `{column.type}` |" in text


def test_every_column_is_filled_from_an_item_field() -> None:
    fields = {"products": ProductHit.fields, "matches": ProductHit.fields, "seeds": SeedSummary.fields}
    for name, table in TABLES.items():
        assert set(table.column_names) <= set(fields[name]), name


def test_arrow_schemas_carry_the_docs() -> None:
    for table in TABLES.values():
        schema = table.arrow_schema
        assert schema.metadata[b"table"] == table.name.encode()
        for column in table.columns:
            field = schema.field(column.name)
            assert field.metadata[b"doc"] == column.doc.encode()
            assert field.nullable is column.nullable
            assert not isinstance(field.type, pa.ExtensionType)
