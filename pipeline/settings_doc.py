"""Generate docs/settings.md from the ``#:`` comments in pipeline/settings.py: ``python -m pipeline.settings_doc``."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SETTINGS_FILE = Path(__file__).with_name("settings.py")
_SECTION_RE = re.compile(r"^# ([A-Z][^-].*)$")


def settings_markdown(source: str | None = None) -> str:
    """The settings reference: one table per section of settings.py, in file order."""
    source = SETTINGS_FILE.read_text(encoding="utf-8") if source is None else source
    lines = source.splitlines()
    out = [
        "# Settings",
        "",
        "Generated from `pipeline/settings.py` by `python -m pipeline.settings_doc > docs/settings.md`;",
        "do not edit by hand. Change any of them with `scrapy crawl imagesearch -s NAME=value`.",
        "Lists and dicts take JSON on the command line, e.g. `-s 'DATASET_FORMATS=[\"parquet\"]'`.",
    ]
    for node in ast.parse(source).body:
        # Plain and annotated assignments (``IMAGESEARCH_APP_KEYS: list[str] = []``) alike.
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        first = node.lineno - 1
        doc: list[str] = []
        i = first - 1
        while i >= 0 and lines[i].startswith("#:"):
            doc.insert(0, lines[i][2:].strip())
            i -= 1
        # A section header (a title between two rules) just above opens a new table.
        title = _SECTION_RE.match(lines[i - 1]) if i >= 2 and lines[i].startswith("# ---") else None
        header = title.group(1) if title and lines[i - 2].startswith("# ---") else None
        if header:
            out += ["", f"## {header}", "", "| setting | default | meaning |", "|---|---|---|"]
        default = ast.get_source_segment(source, value) or ""
        default = " ".join(default.split()).replace("|", "\\|")
        if len(default) > 60:
            default = default[:57] + "..."
        meaning = " ".join(doc).replace("|", "\\|")
        out.append(f"| `{name}` | `{default}` | {meaning} |")
    return "\n".join(out) + "\n"


def main() -> None:
    sys.stdout.write(settings_markdown())


if __name__ == "__main__":
    main()
