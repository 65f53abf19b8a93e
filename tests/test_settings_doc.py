"""docs/settings.md is the settings reference users read: it must match pipeline/settings.py."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline.settings_doc import SETTINGS_FILE, settings_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_committed_settings_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == settings_markdown(), (
        "docs/settings.md is stale: run `python -m pipeline.settings_doc > docs/settings.md`"
    )


def test_every_imagesearch_and_dataset_setting_is_documented() -> None:
    source = SETTINGS_FILE.read_text(encoding="utf-8")
    names = [
        n.targets[0].id
        for n in ast.parse(source).body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    ]
    ours = [n for n in names if n.startswith(("IMAGESEARCH_", "DATASET_", "PARQUET_"))]
    assert ours, "no project settings found"
    doc = settings_markdown()
    undocumented = [
        n for n in ours
        if f"| `{n}` | " in doc and doc.split(f"| `{n}` | ", 1)[1].split("\n", 1)[0].endswith("|  |")
    ]
    assert not undocumented, f"settings without a #: comment in pipeline/settings.py: {undocumented}"
