"""A run's manifest (what was written, with its rows, calls and stats) and the summary a person reads.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from exporters.layout import (
    FORMAT_EXTENSIONS,
    INCOMPLETE_DIR,
)
from items.schema import MATCHES, OFFERS, PRODUCTS, TABLES
from pipeline.errors import error_count
from pipeline.runs.identity import RunInfo, manifest_path


def json_safe_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Crawl stats as JSON values (datetimes as ISO 8601), without keys that may carry secrets."""
    import re

    secret_key = re.compile(r"secret|sign|passw|token|credential|app_?key|session", re.IGNORECASE)
    safe: dict[str, Any] = {}
    for key, value in sorted(stats.items()):
        if secret_key.search(str(key)):
            continue
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        safe[str(key)] = value
    return safe


def rows_by_format(files: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows of each table in each format, from the file records."""
    rows: dict[str, dict[str, int]] = {}
    for f in files:
        by_table = rows.setdefault(f["format"], {})
        by_table[f["table"]] = by_table.get(f["table"], 0) + f["rows"]
    return rows


def runs_row(run: RunInfo, stats: dict[str, Any], statuses: dict[str, int], counts: dict[str, int],
             finished_at: datetime, reason: str) -> dict[str, Any]:
    """The run's one row of the ``runs`` table: when, how it ended, its seeds by status, calls and rows."""
    return {
        "run_id": run.run_id, "started_at": run.started_at, "finished_at": finished_at,
        "complete": reason == "finished", "finish_reason": reason,
        "gateway": stats.get("imagesearch/gateway"), "endpoint_host": stats.get("imagesearch/endpoint_host"),
        "seeds": sum(statuses.values()),
        **{f"seeds_{status}": statuses.get(status, 0) for status in ("ok", "rejected", "failed", "unfinished")},
        "calls": stats.get("imagesearch/calls", 0), "calls_replayed": stats.get("journal/replayed", 0),
        "products": counts.get(PRODUCTS.name, 0), "matches": counts.get(MATCHES.name, 0),
        "offers": counts.get(OFFERS.name, 0),
        "pictures_missing": stats.get("pictures/missing", 0) if "pictures/enabled" in stats else None,
    }


def build_manifest(run: RunInfo, stats: dict[str, Any], files: list[dict[str, Any]], rows: dict[str, dict[str, int]],
                   reason: str, finished_at: datetime, crawl_started_at: datetime | None, csv_dialect: str | None,
                   workers: dict[str, Any] | None) -> dict[str, Any]:
    """The run's manifest: what it wrote (every file, its rows and bytes), how it ended, its calls and stats."""
    manifest: dict[str, Any] = {
        "run_id": run.run_id,
        "dt": run.dt,
        # Which API answered, and where (a host, never a URL: no credentials can ride along).
        "gateway": stats.get("imagesearch/gateway"),
        "endpoint_host": stats.get("imagesearch/endpoint_host"),
        "started_at": run.started_at.isoformat(),
        "crawl_started_at": (crawl_started_at or run.started_at).isoformat(),
        "finished_at": finished_at.isoformat(),
        "finish_reason": reason,
        "complete": reason == "finished",
        "csv_dialect": csv_dialect,
        "calls": call_summary(stats),
        "rows": rows,
        "files": files,
        "stats": json_safe_stats(stats),
    }
    if workers is not None:
        manifest["workers"] = workers
    return manifest


def snapshot_summary(latest: dict[str, Any], formats: list[str]) -> dict[str, Any]:
    """What the manifest says of the snapshot (products_latest) a finished run's commit moved in."""
    return {"rows": latest["files"][0]["rows"], "runs": len(latest["covers"]),
            "paths": [f["path"] for f in latest["files"] if f["format"] in formats]}


def call_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``calls``: spent against planned, the quota, the waits for it, its bans, errors, silence."""
    return {
        "spent": stats.get("imagesearch/calls", 0),
        "replayed": stats.get("journal/replayed", 0),
        "planned": stats.get("progress/calls_planned"),
        "quota": stats.get("pacing/quota"),
        "waits": stats.get("pacing/waits", 0),
        "wait_seconds": stats.get("pacing/wait_seconds", 0.0),
        "bans": stats.get("pacing/quota_errors", 0),
        "ban_seconds": stats.get("pacing/ban_seconds", 0.0),
        "errors": error_count(stats),
        "longest_silence_seconds": stats.get("imagesearch/longest_silence_seconds", 0.0),
    }


def summary_lines(root: Path, manifest: dict[str, Any], report: Path | None = None) -> list[str]:
    """What a person reads at the end of a crawl: where each table went, its rows, and how the seeds fared."""
    state = "complete" if manifest["complete"] else f"INCOMPLETE, {manifest['finish_reason']}"
    lines = [f"Datasets of run {manifest['run_id']} ({state}) under {root}/:"]
    formats = [fmt for fmt in FORMAT_EXTENSIONS if fmt in manifest["rows"]]
    stats = manifest["stats"]
    tree = "" if manifest["complete"] else f"{INCOMPLETE_DIR}/"
    for table in TABLES:
        rows = manifest["rows"][formats[0]].get(table, 0) if formats else 0
        where = "  ".join(f"{tree}{fmt}/{table}/dt={manifest['dt']}/" for fmt in formats)
        line = f"  {table:<8} {rows:>9,} rows  {where}"
        if table == "seeds":
            statuses = ["ok", "rejected", "failed"]
            if stats.get("imagesearch/seeds/unfinished"):
                statuses.append("unfinished")
            outcomes = (f"{stats.get(f'imagesearch/seeds/{s}', 0):,} {s}" for s in statuses)
            line += "  (" + ", ".join(outcomes) + ")"
        lines.append(line)
    for table, snapshot in manifest.get("snapshots", {}).items():
        where = "  ".join(str(Path(path).parent) + "/" for path in snapshot["paths"])
        runs = f"{snapshot['runs']:,} finished run" + ("" if snapshot["runs"] == 1 else "s")
        lines.append(f"  {table}: {snapshot['rows']:,} rows over {runs}  {where}")
    lines.append(f"  manifest: {manifest_path(root, manifest['run_id'])}")
    if report is not None:
        lines.append(f"  report:   {report}")
    return lines

