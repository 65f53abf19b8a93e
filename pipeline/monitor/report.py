"""The visual report of a run: ``DATASET_DIR/_reports/<run_id>.html``, one file that opens from disk.

It is built from the run's committed datasets (its manifest, seeds, matches and products), so the
report written at commit and one written later by ``scrapy report RUN_ID`` are the same:

- the run's summary: seeds by outcome, calls spent against planned, the quota and how much of it
  the run's time allowed was used, waits, bans, errors, time;
- the seeds that were not searched to the end, with their reasons;
- per seed: its photo (a thumbnail embedded in the file), its best matches with their picture
  (the listing's ``pic_url``), title, price, sales, shop and a Tmall mark, each linking to the
  listing, and a price/sales plot of all its matches (Vega-Lite, rendered in the browser by the
  Vega JavaScript embedded in the file: vl-convert-python's bundle, so no CDN and no server).

At thousands of seeds it stays light: the seeds are split in pages of REPORT_PAGE_SEEDS, each page's
data a JSON block parsed only when the page is shown; pictures load lazily and plots are drawn when
scrolled into view (bench/bench_report.py measures a 5,000-seed report).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

from items.docs import duckdb_read_csv, sql_paths
from items.schema import MATCHES, OFFERS, PRODUCTS, SEEDS
from pipeline.components.extensions import SANDBOX_STAT
from pipeline.monitor.progress import duration
from pipeline.pictures import picture_url
from pipeline.runs.identity import MANIFEST_DIR, manifest_path

logger = logging.getLogger(__name__)

REPORT_DIR = "_reports"
#: Longest side of the seed photo thumbnails embedded in the report, in pixels.
THUMBNAIL_SIDE = 160
_THUMBNAIL_QUALITY = 70
#: Rows of the table of seeds not searched to the end, before "and N more".
_NOT_OK_ROWS = 500
_SALES_KINDS = {"monthly": "sold/month", "paid": "paid", "received": "received", "total": "sold",
                "unknown": "sales"}


#: Where a listing's picture can be had without the network: its JPEG bytes by ``pic_url``, or None.
PictureSource = Callable[[str], "bytes | None"]


class ReportError(Exception):
    """The report cannot be written (no such run, no readable tables): one line for the user."""


def report_path(root: Path, run_id: str) -> Path:
    return root / REPORT_DIR / f"{run_id}.html"


def _manifest(root: Path, run_id: str) -> dict[str, Any]:
    try:
        path = manifest_path(root, run_id)
    except ValueError as exc:
        raise ReportError(f"{run_id!r} is not a run id: {exc}") from None
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        runs = sorted(p.stem for p in (root / MANIFEST_DIR).glob("*.json"))
        known = f"the runs there: {', '.join(runs[-5:])}" + (" ..." if len(runs) > 5 else "") if runs else \
            "there is no committed run there"
        raise ReportError(f"no committed run {run_id} under {root} ({known})") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the manifest {path}: {exc}") from None
    return manifest


def latest_run_id(root: Path) -> str:
    """The committed run with the newest manifest (``scrapy report latest``)."""
    manifests = sorted((root / MANIFEST_DIR).glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        raise ReportError(f"there is no committed run under {root}")
    return manifests[-1].stem


def _relation(root: Path, manifest: dict[str, Any], table: str) -> str:
    """DuckDB's reader of the run's ``table`` files: its Parquet files, else its standard-dialect CSV."""
    by_format: dict[str, list[str]] = {}
    for f in manifest.get("files", []):
        if f.get("table") == table:
            by_format.setdefault(f["format"], []).append(str(root / f["path"]))
    if "parquet" in by_format:
        return f"read_parquet({sql_paths(sorted(by_format['parquet']))})"
    if "csv" in by_format and manifest.get("csv_dialect", "standard") == "standard":
        schema = {t.name: t for t in (PRODUCTS, MATCHES, SEEDS, OFFERS)}[table]
        return duckdb_read_csv(schema, sorted(by_format["csv"]), partitioned=False)
    if "csv" in by_format:
        raise ReportError(f"run {manifest['run_id']} has only excel-dialect CSV files; the report reads Parquet or "
                          "standard CSV (DATASET_FORMATS with parquet, or CSV_DIALECT=standard)")
    raise ReportError(f"run {manifest['run_id']} has no {table} files")


# -- the data ----------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"¥{value:,.2f}"


def _price_text(price_min: Decimal | None, price_max: Decimal | None, coupon: Decimal | None) -> str:
    if price_min is None and price_max is None:
        text = "price unknown"
    elif price_max is None or price_min == price_max:
        text = _money(price_min) + ("+" if price_max is None else "")  # type: ignore[operator]
    else:
        text = f"{_money(price_min)}–{_money(price_max)}"
    if coupon is not None:
        text += f" (after coupon {_money(coupon)})"
    return text


def _sales_text(sales: int | None, kind: str | None) -> str:
    if sales is None:
        return "sales unknown"
    return f"{sales:,} {_SALES_KINDS.get(kind or 'unknown', 'sales')}"


def _web_url(url: str | None) -> str | None:
    """Only http(s) URLs become links or pictures (a ``javascript:`` URL in a catalogue stays text)."""
    return url if url and urlsplit(url).scheme in ("http", "https") else None


def _data_uri(source: str | io.BytesIO) -> str | None:
    """A picture (a path, or bytes) as a small embedded JPEG (``data:`` URI); None if it cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(source) as img:
            img.draft("RGB", (THUMBNAIL_SIDE * 2, THUMBNAIL_SIDE * 2))  # JPEG: decode at a fraction of the size
            small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            out = io.BytesIO()
            small.save(out, "JPEG", quality=_THUMBNAIL_QUALITY, optimize=True)
    except Exception:  # noqa: BLE001 - any unreadable photo is shown as such, never fails the report
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


@functools.lru_cache(maxsize=4096)
def thumbnail(path: str, mtime_ns: int) -> str | None:
    """A seed photo as a small embedded JPEG; None if it cannot be read now."""
    return _data_uri(path)


def sandbox_pictures(manifest: dict[str, Any]) -> PictureSource | None:
    """For a run that searched the embedded sandbox (which stopped with its crawl): its listings'
    pictures rendered from the sandbox's catalogue, as the sandbox served them. None otherwise."""
    catalog_name = (manifest.get("stats") or {}).get(SANDBOX_STAT)
    host = manifest.get("endpoint_host")
    if not catalog_name or not host:
        return None
    from sandbox.catalog import builtin_catalog, load_jsonl

    try:
        catalog = builtin_catalog() if catalog_name == "builtin" else load_jsonl(Path(catalog_name))
    except (OSError, ValueError) as exc:
        logger.warning("The sandbox catalogue %s cannot be read (%s): the report links its pictures instead",
                       catalog_name, exc)
        return None

    def picture(url: str) -> bytes | None:
        parts = urlsplit(picture_url(url))  # a size or format the CDN names (.jpg_400x400.jpg) is the picture
        name = parts.path.rpartition("/")[2]
        if parts.netloc != host or not parts.path.startswith("/img/") or not name.endswith(".jpg"):
            return None
        product = catalog.get(name[: -len(".jpg")])
        if product is None:
            return None
        out = io.BytesIO()
        product.image().convert("RGB").save(out, "JPEG", quality=85)
        return out.getvalue()

    return picture


def _photo(source: str | None) -> tuple[str | None, str | None]:
    """The seed's photo for the report and, when there is none, why."""
    if not source:
        return None, "no source"
    if _web_url(source):
        return source, None  # a URL seed: its own picture, from where it came
    try:
        mtime = os.stat(source).st_mtime_ns
    except OSError:
        return None, "the photo is no longer at its path"
    thumb = thumbnail(source, mtime)
    return (thumb, None) if thumb else (None, "the photo cannot be decoded")


@dataclass
class ReportData:
    manifest: dict[str, Any]
    seeds: list[dict[str, Any]]


def load_report_data(root: Path, run_id: str, top: int) -> ReportData:
    """The run's seeds in the order given, each with its ``top`` best matches and all its (price, sales).
    A run of the embedded sandbox gets its listings' pictures embedded (see sandbox_pictures)."""
    manifest = _manifest(root, run_id)
    pictures = sandbox_pictures(manifest)
    embedded: dict[str, str | None] = {}

    def pic(url: str | None) -> str | None:
        url = _web_url(url)
        if url is None or pictures is None:
            return url
        if url not in embedded:
            data = pictures(url)
            embedded[url] = _data_uri(io.BytesIO(data)) if data else None
        return embedded[url] or url
    seeds_rel = _relation(root, manifest, SEEDS.name)
    try:
        with duckdb.connect() as db:
            # One entry a seed, its views (photos) in order; the seeds table's own order (seed_rank's).
            seeds = db.sql(
                f"SELECT seed_id, list({{'view': view, 'source': source, 'status': status, 'code': error_code, "
                f"'msg': error_msg}} ORDER BY view), "
                f"first(total_results ORDER BY view), sum(pages_fetched)::BIGINT, sum(items_found)::BIGINT "
                f"FROM (SELECT *, row_number() OVER () AS ord FROM {seeds_rel}) GROUP BY seed_id ORDER BY min(ord)"
            ).fetchall()
            counts: dict[str, int] = next(iter((manifest.get("rows") or {}).values()), {})
            if counts.get(MATCHES.name):
                matches_rel = _relation(root, manifest, MATCHES.name)
                products_rel = _relation(root, manifest, PRODUCTS.name)
                fused = (f"SELECT seed_id, num_iid, min(fused_rank) AS rank, list(DISTINCT view ORDER BY view) AS "
                         f"views FROM {matches_rel} GROUP BY seed_id, num_iid")
                joined = (f"SELECT m.seed_id, m.rank, p.title, p.pic_url, p.detail_url, p.seller_nick, p.is_tmall, "
                          f"p.price_min, p.price_max, p.coupon_price, p.sales, p.sales_kind, m.views "
                          f"FROM ({fused}) m JOIN {products_rel} p USING (num_iid)")
                best = db.sql(f"SELECT * FROM ({joined}) QUALIFY row_number() OVER "
                              f"(PARTITION BY seed_id ORDER BY rank) <= {int(top)} "
                              f"ORDER BY seed_id, rank").fetchall()
                points = db.sql(
                    f"SELECT seed_id, list([coalesce(p.coupon_price, p.price_min)::DOUBLE, p.sales::DOUBLE] "
                    f"ORDER BY m.rank) FROM ({fused}) m JOIN {products_rel} p USING (num_iid) "
                    f"WHERE coalesce(p.coupon_price, p.price_min) > 0 GROUP BY seed_id").fetchall()
            else:
                best, points = [], []
            grouped = counts.get(MATCHES.name) and counts.get(OFFERS.name)
            offers = _seed_offers(db, root, manifest, pic) if grouped else {}
    except duckdb.Error as exc:
        raise ReportError(f"cannot read run {run_id}'s tables: {exc}") from None
    by_seed: dict[str, list[list[Any]]] = {}
    for (seed_id, rank, title, pic_link, detail, shop, tmall, pmin, pmax, coupon, sales, kind, views) in best:
        by_seed.setdefault(seed_id, []).append([
            rank, title or "", pic(pic_link), _web_url(detail), shop or "", bool(tmall),
            _price_text(pmin, pmax, coupon), _sales_text(sales, kind), [int(v) for v in views],
        ])
    plots = {seed_id: [[round(p, 2), None if s is None else int(s)] for p, s in values] for seed_id, values in points}
    rows = [_seed_entry(seed_id, views, total, pages, found, by_seed.get(seed_id, []), plots.get(seed_id, []))
            | {"o": offers.get(seed_id, [])} for seed_id, views, total, pages, found in seeds]
    return ReportData(manifest, rows)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


#: Offer groups a seed's entry shows (those of its best matches), and listings a group.
REPORT_OFFERS, REPORT_OFFER_LISTINGS = 5, 5


def _seed_offers(db: Any, root: Path, manifest: dict[str, Any], pic: Callable[[str | None], str | None]
                 ) -> dict[str, list[list[Any]]]:
    """Each seed's offer groups of more than one listing, its best match's first: [listings, sellers, the
    spread's text, its listings cheapest first ([title, picture, item page, seller, price text])]."""
    matches, products = _relation(root, manifest, MATCHES.name), _relation(root, manifest, PRODUCTS.name)
    offers = _relation(root, manifest, OFFERS.name)
    rows = db.sql(
        f"WITH g AS (SELECT m.seed_id, o.offer_id, min(m.fused_rank) AS rank, any_value(o.listings) AS listings, "
        f"any_value(o.sellers) AS sellers, any_value(o.price_min) AS pmin, any_value(o.price_median) AS pmed, "
        f"any_value(o.price_max) AS pmax FROM {matches} m JOIN {offers} o USING (offer_id) WHERE o.listings > 1 "
        f"GROUP BY m.seed_id, o.offer_id QUALIFY row_number() OVER (PARTITION BY m.seed_id ORDER BY "
        f"min(m.fused_rank), o.offer_id) <= {REPORT_OFFERS}), "
        f"l AS (SELECT offer_id, list([title, pic_url, detail_url, seller_nick, price_min::VARCHAR, "
        f"price_max::VARCHAR] ORDER BY price_min NULLS LAST, num_iid) AS listed FROM {products} "
        f"WHERE offer_id IN (SELECT offer_id FROM g) GROUP BY offer_id) "
        f"SELECT g.seed_id, g.listings, g.sellers, g.pmin, g.pmed, g.pmax, l.listed FROM g JOIN l USING (offer_id) "
        f"ORDER BY g.seed_id, g.rank, g.offer_id").fetchall()
    by_seed: dict[str, list[list[Any]]] = {}
    for seed_id, listings, sellers, pmin, pmed, pmax, listed in rows:
        spread = "no listing priced" if pmin is None else (
            f"{_money(pmin)}–{_money(pmax)}, median {_money(pmed)}" if pmin != pmax else _money(pmin))
        cards = [[title or "", pic(picture), _web_url(detail), shop or "",
                  _price_text(_decimal(low), _decimal(high), None)]
                 for title, picture, detail, shop, low, high in listed[:REPORT_OFFER_LISTINGS]]
        by_seed.setdefault(seed_id, []).append([int(listings), int(sellers), spread, cards])
    return by_seed


def _seed_entry(seed_id: str, views: list[dict[str, Any]], total: Any, pages: Any, found: Any,
                matches: list[list[Any]], points: list[list[Any]]) -> dict[str, Any]:
    """A seed's entry in the report's data: its first photo, its other views beside it, and its status: ok
    when any view was searched (a view that was not says so), else the first view's."""
    first = views[0]
    failed = [view for view in views if view["status"] != "ok"]
    if len(failed) == len(views):
        status, code, msg = first["status"], first["code"], first["msg"]
    else:
        status, code, msg = "ok", None, "; ".join(
            f"view {view['view']} {view['status']}: {view['code'] or ''} {view['msg'] or ''}".strip()
            for view in failed) or None
    photo, why = _photo(first["source"])
    others = [{"v": view["view"], "src": view["source"], "photo": _photo(view["source"])[0]} for view in views[1:]]
    return {"id": seed_id, "src": first["source"], "st": status, "code": code, "msg": msg, "tot": total,
            "pages": pages, "found": found, "photo": photo, "nophoto": why, "views": others, "m": matches,
            "pts": points}


# -- the page ----------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return files("pipeline.monitor").joinpath("report_assets", name).read_text(encoding="utf-8")


def _bundle_cache() -> Path:
    """Where the Vega bundle is kept between runs: $XDG_CACHE_HOME (~/.cache)/taobao-imagesearch/."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taobao-imagesearch"


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (``window.vegaEmbed``), from vl-convert-python.

    Bundling takes vl-convert 1.5 s, so the bundle is kept in a cache file per vl-convert version
    (and rebuilt when the file is missing or unreadable; a cache that cannot be written is skipped)."""
    from importlib.metadata import version

    import vl_convert

    cache = _bundle_cache() / f"vega-bundle-{version('vl-convert-python')}.js"
    try:
        text = cache.read_text(encoding="utf-8")
        if text.rstrip().endswith("window.vegaLite=__default1;"):
            return text
    except OSError:
        pass
    text = str(vl_convert.javascript_bundle(None))  # type: ignore[arg-type]  # its stub says str; None is its default
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, cache)
    except OSError as exc:
        logger.debug("Cannot keep the Vega bundle in %s: %s", cache, exc)
    return text


def _json_block(value: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _summary(manifest: dict[str, Any], seeds: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, value) rows of the run's summary."""
    outcomes: dict[str, int] = {}
    for seed in seeds:
        outcomes[seed["st"]] = outcomes.get(seed["st"], 0) + 1
    calls = manifest.get("calls") or {}
    stats = manifest.get("stats") or {}
    spent = calls.get("spent", stats.get("imagesearch/calls", 0)) or 0
    started = datetime.fromisoformat(manifest.get("crawl_started_at") or manifest["started_at"])
    finished = datetime.fromisoformat(manifest["finished_at"])
    seconds = max(0.0, (finished - started).total_seconds())
    state = "complete" if manifest.get("complete") else f"incomplete ({manifest.get('finish_reason')})"
    rows = [
        ("Run", f"{manifest['run_id']} ({state}), dt={manifest.get('dt')}"),
        ("Gateway", f"{manifest.get('gateway') or '?'} at {manifest.get('endpoint_host') or '?'}"),
        ("Time", f"{started:%Y-%m-%d %H:%M:%S} to {finished:%Y-%m-%d %H:%M:%S} UTC ({duration(seconds)})"),
        ("Seeds", f"{len(seeds):,}: " + ", ".join(f"{n:,} {status}" for status, n in sorted(
            outcomes.items(), key=lambda kv: ("ok", "rejected", "failed", "unfinished").index(kv[0])
            if kv[0] in ("ok", "rejected", "failed", "unfinished") else 9))),
    ]
    call_line = f"{spent:,} spent"
    if calls.get("planned") is not None:
        call_line += f" of {calls['planned']:,} planned"
    if calls.get("replayed"):
        call_line += f", {calls['replayed']:,} answers replayed from JOBDIR"
    rows.append(("Calls", call_line))
    quota = calls.get("quota")
    if quota:
        q_calls, _, q_seconds = str(quota).partition("/")
        allowed = int(q_calls) * max(1.0, math.ceil(seconds / float(q_seconds)))
        rows.append(("Quota", f"{int(q_calls):,} calls per {float(q_seconds):g} s: the run's time allowed up to "
                              f"{allowed:,.0f}; {spent:,} used ({100 * spent / allowed:.0f}%)"))
        rows.append(("Waits", f"{calls.get('waits', 0):,} calls waited {duration(calls.get('wait_seconds') or 0)} in "
                              f"all for their slot; {calls.get('bans', 0):,} quota bans "
                              f"({duration(calls.get('ban_seconds') or 0)})"))
    if stats.get("imagesearch/daily_quota"):
        rows.append(("Day's quota", f"{stats['imagesearch/daily_quota']} calls used, as the gateway last said"))
    silence = calls.get("longest_silence_seconds") or 0
    rows.append(("Errors", f"{calls.get('errors', 0):,} error answers or attempts without an answer"
                           + (f"; the gateway was silent for {duration(silence)} at most" if silence else "")))
    counts: dict[str, int] = next(iter((manifest.get("rows") or {}).values()), {})
    rows.append(("Rows", f"{counts.get('products', 0):,} products, {counts.get('matches', 0):,} matches"))
    host = str(manifest.get("endpoint_host") or "")
    if stats.get(SANDBOX_STAT):
        rows.append(("Pictures", "rendered from the embedded sandbox's catalogue, as it served them during the crawl "
                                 "(the listings' pictures, embedded in this file)"))
    elif host.startswith(("127.", "localhost", "[::1]")):
        rows.append(("Pictures", "served by the sandbox at " + host + ": they show while it runs (an embedded "
                                 "sandbox runs only during its crawl; `python -m sandbox --port "
                                 f"{host.rpartition(':')[2]}` serves them again)"))
    return rows


def _checks_section(checks: list[dict[str, Any]]) -> str:
    """The data-quality checks of the run: each passed or failed, with its figure and threshold."""
    if not checks:
        return ""
    esc = html.escape
    failed = sum(not check["passed"] for check in checks)
    rows = "\n".join(
        f'<tr class="{"check-ok" if c["passed"] else "check-" + esc(c["on_fail"])}"><td>{esc(c["name"])}</td>'
        f'<td>{"pass" if c["passed"] else "FAIL" if c["on_fail"] == "fail" else "warn"}</td>'
        f'<td>{esc(c["line"].split(" (", 1)[0].removeprefix(c["name"] + " "))}</td><td>{esc(c["doc"])}</td></tr>'
        for c in checks)
    head = f"Checks: {failed} of {len(checks)} failed" if failed else f"Checks: all {len(checks)} passed"
    return (f'<section class="checks"><h2>{head}</h2><table><thead><tr><th>check</th><th>result</th>'
            f'<th>figure and threshold</th><th>what</th></tr></thead><tbody>{rows}</tbody></table></section>')


def render_report(data: ReportData, page_seeds: int) -> str:
    """The report's HTML."""
    manifest, seeds = data.manifest, data.seeds
    page_seeds = max(1, page_seeds)
    pages = [seeds[i:i + page_seeds] for i in range(0, len(seeds), page_seeds)] or [[]]
    esc = html.escape
    summary = "\n".join(f"<dt>{esc(label)}</dt><dd>{esc(value)}</dd>" for label, value in _summary(manifest, seeds))
    not_ok = [(i, s) for i, s in enumerate(seeds, start=1) if s["st"] != "ok"]
    if not_ok:
        rows = "\n".join(
            f'<tr class="st-{esc(s["st"])}"><td><a href="#seed-{i}">{i}</a></td><td>{esc(s["id"])}</td>'
            f'<td>{esc(s["st"])}</td><td>{esc(s["code"] or "")}</td><td>{esc(s["msg"] or "")}</td></tr>'
            for i, s in not_ok[:_NOT_OK_ROWS])
        more = (f'<p class="more">and {len(not_ok) - _NOT_OK_ROWS:,} more: the run\'s seeds table has them all.</p>'
                if len(not_ok) > _NOT_OK_ROWS else "")
        problems = (f'<section class="problems"><h2>Seeds not searched to the end ({len(not_ok):,})</h2>'
                    f'<table><thead><tr><th>#</th><th>seed</th><th>status</th><th>code</th><th>reason</th></tr>'
                    f'</thead><tbody>{rows}</tbody></table>{more}</section>')
    else:
        problems = '<p class="all-ok">Every seed was searched to the end.</p>'
    problems += _checks_section(manifest.get("checks") or [])
    meta = {"run_id": manifest["run_id"], "pages": len(pages), "page_seeds": page_seeds, "seeds": len(seeds)}
    blocks = [f'<script type="application/json" id="page-{k}">{_json_block(page)}</script>'
              for k, page in enumerate(pages, start=1)]
    title = f"Run {manifest['run_id']}: image search report"
    return "".join([
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head>\n<body>\n",
        f'<header><h1>{esc(title)}</h1><dl class="summary">{summary}</dl></header>\n',
        problems,
        '\n<nav class="pager" aria-label="pages of seeds"></nav>\n<main id="seeds"></main>\n',
        '<nav class="pager" aria-label="pages of seeds"></nav>\n',
        f'<script type="application/json" id="report-meta">{_json_block(meta)}</script>\n',
        blocks[0], "\n",
        f"<script>{_asset('report.js')}</script>\n",
        "\n".join(blocks[1:]), "\n",
        f"<script>{vega_bundle()}</script>\n",
        "<script>window.reportChartsReady && window.reportChartsReady();</script>\n",
        "</body></html>\n",
    ])


def write_report(root: Path, run_id: str, *, top: int = 8, page_seeds: int = 50, out: Path | None = None) -> Path:
    """Write the report of committed run ``run_id`` (to ``out``, else DATASET_DIR/_reports/<run_id>.html)."""
    data = load_report_data(root, run_id, top)
    text = render_report(data, page_seeds)
    target = out or report_path(root, run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.monitor.report DATASET_DIR RUN_ID|latest``: the same as ``scrapy report``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pipeline.monitor.report DATASET_DIR RUN_ID|latest", file=sys.stderr)
        return 2
    root = Path(args[0])
    try:
        run_id = latest_run_id(root) if args[1] == "latest" else args[1]
        print(write_report(root, run_id))
    except (ReportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
