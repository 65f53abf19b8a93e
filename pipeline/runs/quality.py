"""Data-quality checks of a run, at its commit: each a figure of the run's tables or stats against a
threshold, as dbt's tests are of a model. A check that fails warns, or fails the run (an exit code of its
own); the run is committed either way, and marked (the manifest's ``checks``, the runs table's
``checks_failed`` and ``failed_checks``, the report's checks section).

IMAGESEARCH_CHECKS changes a check's ``threshold`` or ``on_fail`` (``warn``, ``fail``, ``off``) over CHECKS:
``-s 'IMAGESEARCH_CHECKS={"coverage_price": {"threshold": 0.5, "on_fail": "warn"}}'``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigurationError, error_count
from pipeline.runs.identity import MANIFEST_DIR

#: Each check: what it measures, whether the figure is a least (``min``) or a most (``max``), its
#: threshold and what a failure does. The defaults: a run that found little, or whose seeds were mostly
#: refused, is a warning (bad seeds are said in the seeds table); one whose prices mostly do not parse (a
#: gateway answering another format: every price column of the day wrong) fails.
CHECKS: dict[str, dict[str, Any]] = {
    "seeds_ok": {"doc": "share of seeds ok", "op": "min", "threshold": 0.8, "on_fail": "warn"},
    "matches_per_seed": {"doc": "matches per ok seed", "op": "min", "threshold": 1.0, "on_fail": "warn"},
    "coverage_title": {"doc": "share of products with a title", "op": "min", "threshold": 0.95, "on_fail": "warn"},
    "coverage_price": {"doc": "share of products with a price_min", "op": "min", "threshold": 0.8, "on_fail": "fail"},
    "coverage_sales": {"doc": "share of products with sales", "op": "min", "threshold": 0.5, "on_fail": "warn"},
    "coverage_pic_url": {"doc": "share of products with a pic_url", "op": "min", "threshold": 0.95, "on_fail": "warn"},
    "unparsed_price": {"doc": "share of products whose price did not parse", "op": "max", "threshold": 0.2,
                       "on_fail": "warn"},
    "unparsed_sales": {"doc": "share of products whose sales did not parse", "op": "max", "threshold": 0.2,
                       "on_fail": "warn"},
    "error_rate": {"doc": "gateway errors per call", "op": "max", "threshold": 0.2, "on_fail": "warn"},
    "calls_over_plan": {"doc": "calls spent per call planned", "op": "max", "threshold": 1.25, "on_fail": "warn"},
    "rows_vs_previous": {"doc": "products against the previous finished run's", "op": "min", "threshold": 0.5,
                         "on_fail": "warn"},
}
ACTIONS = ("warn", "fail", "off")


@dataclass(frozen=True)
class CheckResult:
    name: str
    doc: str
    op: str
    threshold: float
    on_fail: str
    #: The run's figure; None when there is nothing to measure (no products, no previous run): it passes.
    figure: float | None
    passed: bool

    @property
    def line(self) -> str:
        """``coverage_price 12.0% < 80.0% (share of products with a price_min)``."""
        shown = "n/a" if self.figure is None else _show(self.name, self.figure)
        sign = (">=" if self.op == "min" else "<=") if self.passed else ("<" if self.op == "min" else ">")
        return f"{self.name} {shown} {sign} {_show(self.name, self.threshold)} ({self.doc})"

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "line": self.line}


def _show(name: str, value: float) -> str:
    return f"{value:.2f}" if name in ("matches_per_seed", "calls_over_plan") else f"{value:.1%}"


def check_settings(given: Any) -> dict[str, dict[str, Any]]:
    """CHECKS with IMAGESEARCH_CHECKS's changes; ConfigurationError naming a bad one."""
    if isinstance(given, str):
        try:
            given = json.loads(given) if given.strip() else {}
        except ValueError:
            raise ConfigurationError("IMAGESEARCH_CHECKS is not JSON: give e.g. "
                                     '{"coverage_price": {"threshold": 0.5}}') from None
    checks = {name: dict(check) for name, check in CHECKS.items()}
    for name, change in dict(given or {}).items():
        if name not in checks:
            raise ConfigurationError(f"IMAGESEARCH_CHECKS: no check {name!r}; the checks: {', '.join(CHECKS)}")
        if not isinstance(change, Mapping) or set(change) - {"threshold", "on_fail"}:
            raise ConfigurationError(f"IMAGESEARCH_CHECKS[{name!r}]: give threshold and/or on_fail")
        if "threshold" in change:
            try:
                checks[name]["threshold"] = float(change["threshold"])
            except (TypeError, ValueError):
                raise ConfigurationError(f"IMAGESEARCH_CHECKS[{name!r}]: threshold is a number") from None
        if "on_fail" in change:
            if change["on_fail"] not in ACTIONS:
                raise ConfigurationError(f"IMAGESEARCH_CHECKS[{name!r}]: on_fail is one of {', '.join(ACTIONS)}")
            checks[name]["on_fail"] = change["on_fail"]
    return checks


def previous_products(root: Path, run_id: str) -> int | None:
    """The products rows of the latest finished run committed to ``root`` before ``run_id``, if any."""
    best: tuple[str, int] | None = None
    for path in (root / MANIFEST_DIR).glob("*.json"):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or manifest.get("run_id") == run_id or manifest.get("complete") is not True:
            continue
        rows: Any = next(iter((manifest.get("rows") or {}).values()), {})
        finished = str(manifest.get("finished_at") or "")
        if isinstance(rows, dict) and (best is None or finished > best[0]):
            best = (finished, int(rows.get("products", 0)))
    return None if best is None else best[1]


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def figures(con: Any, products_query: str, params: dict[str, str], statuses: Mapping[str, int],
            counts: Mapping[str, int], stats: Mapping[str, Any], previous: int | None) -> dict[str, float | None]:
    """Each check's figure for the run: its products (``products_query`` on ``con``), seeds, rows and stats."""
    total, title, price, sales, pic, bad_price, bad_sales = con.sql(
        f"SELECT count(*), count(title), count(price_min), count(sales), count(pic_url), "
        f"count(*) FILTER (price_min IS NULL AND coupon_price IS NULL AND trim(coalesce(price_raw, '')) <> ''), "
        f"count(*) FILTER (sales IS NULL AND trim(coalesce(sales_raw, '')) <> '') FROM ({products_query})",
        params=params).fetchall()[0]
    ok, seeds = statuses.get("ok", 0), sum(statuses.values())
    calls, planned = stats.get("imagesearch/calls", 0), stats.get("progress/calls_planned") or 0
    return {
        "seeds_ok": _share(ok, seeds), "matches_per_seed": _share(counts.get("matches", 0), ok),
        "coverage_title": _share(title, total), "coverage_price": _share(price, total),
        "coverage_sales": _share(sales, total), "coverage_pic_url": _share(pic, total),
        "unparsed_price": _share(bad_price, total), "unparsed_sales": _share(bad_sales, total),
        "error_rate": _share(error_count(dict(stats)), calls), "calls_over_plan": _share(calls, planned),
        "rows_vs_previous": _share(counts.get("products", 0), previous) if previous else None,
    }


def evaluate(found: Mapping[str, float | None], checks: Mapping[str, Mapping[str, Any]]) -> list[CheckResult]:
    """The results of the checks that are not off."""
    results = []
    for name, check in checks.items():
        if check["on_fail"] == "off":
            continue
        figure, threshold = found.get(name), check["threshold"]
        passed = figure is None or (figure >= threshold if check["op"] == "min" else figure <= threshold)
        results.append(CheckResult(name, check["doc"], check["op"], threshold, check["on_fail"], figure, passed))
    return results
