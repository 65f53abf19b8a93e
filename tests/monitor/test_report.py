"""The run report of a real crawl, opened from disk in a real headless Chromium (Debian's, driven by Playwright).

The crawl searches a standalone sandbox, which keeps serving the listings' pictures while the
browser looks at the report. Set UPDATE_SCREENSHOTS=1 to write docs/report.png from the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browsers import CHROMIUM, CHROMIUM_ARGS
from datasets import REPO, load_dataset, run_crawl

from sandbox.testing import SandboxProcess

DEMO_SEEDS = sorted(p for p in (REPO / "data" / "seeds").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
PAGE_SEEDS = 4


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any], SandboxProcess]]:
    """A crawl of the demo seeds plus one file that is no image, against a sandbox that stays up."""
    tmp = tmp_path_factory.mktemp("report")
    not_a_photo = tmp / "notes.jpg"
    not_a_photo.write_text("these are my notes, not a photo\n", encoding="utf-8")
    seeds = ",".join([*map(str, DEMO_SEEDS), str(not_a_photo)])
    with SandboxProcess() as sandbox:
        result = run_crawl(seeds, "-a", "pages=2", "-s", "IMAGESEARCH_QUOTA=", "-s", f"REPORT_PAGE_SEEDS={PAGE_SEEDS}",
                           dataset_dir=tmp / "datasets", endpoint=sandbox.endpoint)
        assert result.returncode == 0, result.tail()
        yield tmp / "datasets", result.manifest(), sandbox


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make install` as root installs Debian's chromium package "
                    "(or: sudo apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser: Any, report: Path, width: int = 1280, height: int = 900) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(report.as_uri(), wait_until="load")
    return page, problems


def _pictures_loaded(page: Any, section: str, which: str = ".seed-head img, .matches img") -> list[int]:
    """Scroll a seed's section into view, wait for its pictures (``which``: the photo and the matches'), and
    give their natural widths."""
    page.locator(section).scroll_into_view_if_needed()
    selector = ", ".join(f"{section} {part.strip()}" for part in which.split(","))
    page.wait_for_function(
        "s => Array.from(document.querySelectorAll(s)).every(i => i.complete)", arg=selector, timeout=15_000)
    widths: list[int] = page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.naturalWidth)")
    return widths


def test_the_report_shows_each_seed_with_its_photo_and_its_matches_pictures(
    crawled: tuple[Path, dict[str, Any], SandboxProcess], browser: Any, tmp_path: Path,
) -> None:
    datasets, manifest, _ = crawled
    report = datasets / "_reports" / f"{manifest['run_id']}.html"
    assert report.is_file()
    seeds = load_dataset(datasets)["seeds"]
    assert len(seeds) == len(DEMO_SEEDS) + 1
    page, problems = _open(browser, report)
    page.wait_for_selector(".chart svg", timeout=15_000)  # the Vega bundle has run
    page.screenshot(path=str(tmp_path / "report.png"))
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(tmp_path / "report.png", REPO / "docs" / "report.png")

    # The summary says what the run did.
    summary = page.inner_text(".summary")
    assert f"{len(seeds)}: {len(DEMO_SEEDS)} ok, 1 rejected" in summary, summary
    assert f"{manifest['calls']['spent']} spent" in summary, summary
    # The rejected seed is listed with its reason, and its section says it too.
    problem_rows = page.locator(".problems tbody tr")
    assert problem_rows.count() == 1
    row = problem_rows.inner_text()
    rejected = seeds[seeds["status"] == "rejected"].iloc[0]
    assert "notes" in row and "rejected" in row and rejected["error_code"] in row, row

    # One section per seed, page after page (PAGE_SEEDS a page), each ok one with its photo and matches.
    pages = -(-len(seeds) // PAGE_SEEDS)
    seen = 0
    matches = load_dataset(datasets)["matches"]
    for number in range(1, pages + 1):
        if number > 1:
            page.locator(".pager").first.get_by_text("next ›").click()
        sections = page.locator("section.seed")
        assert sections.count() == min(PAGE_SEEDS, len(seeds) - seen)
        for _ in range(sections.count()):
            seen += 1
            section = f"#seed-{seen}"
            seed = seeds.iloc[seen - 1]
            heading = page.inner_text(f"{section} h2")
            assert heading == f"{seen}. {seed['seed_id']}", heading
            widths = _pictures_loaded(page, section)
            if seed["status"] == "ok":
                shown = min(8, int((matches["seed_id"] == seed["seed_id"]).sum()))
                assert len(widths) == 1 + shown and shown > 0, (section, widths)
                assert all(width > 0 for width in widths), (section, widths)
                page.locator(f"{section} .chart").scroll_into_view_if_needed()  # a tall section: its chart too
                page.wait_for_selector(f"{section} .chart svg", timeout=15_000)  # drawn once in view
                assert page.locator(f"{section} a.match").count() == shown
                first = page.locator(f"{section} a.match").first.get_attribute("href")
                assert first and first.startswith(("http://", "https://")), first
            else:
                assert widths == [] and "photo not available" in page.inner_text(section)
                assert rejected["error_code"] in page.inner_text(f"{section} .reason")
    assert seen == len(seeds)
    assert not problems, problems


def test_a_crawl_of_the_embedded_sandbox_shows_its_pictures_after_the_sandbox_is_gone(
    browser: Any, tmp_path: Path,
) -> None:
    """What `make crawl` gives a new user: the embedded sandbox stops with the crawl, and the report
    still shows every listing's picture (rendered from its catalogue, embedded in the file)."""
    result = run_crawl("data/seeds", "-a", "pages=1", "-s", "IMAGESEARCH_QUOTA=", dataset_dir=tmp_path / "datasets",
                       pictures=True)
    assert result.returncode == 0, result.tail()
    report = tmp_path / "datasets" / "_reports" / f"{result.manifest()['run_id']}.html"
    page, problems = _open(browser, report)
    for k in range(1, len(DEMO_SEEDS) + 1):
        widths = _pictures_loaded(page, f"#seed-{k}")
        assert len(widths) == 9 and all(width > 0 for width in widths), (k, widths)
    sources = page.eval_on_selector_all("img.match-pic", "imgs => imgs.map(i => i.src.slice(0, 15))")
    assert sources and set(sources) == {"data:image/jpeg"}, set(sources)
    # The demo seeds' products are sold by several shops: each such seed shows its offers, their spread,
    # and their listings cheapest first, their pictures too.
    offers = load_dataset(tmp_path / "datasets")["offers"]
    grouped = offers[offers["listings"] > 1]
    spreads = page.eval_on_selector_all(".offer .spread", "els => els.map(e => e.textContent)")
    spread = re.compile(r"\d+ sellers, \d+ listings: ¥[\d,.]+(–¥[\d,.]+, median ¥[\d,.]+)?")
    assert len(spreads) >= 4 and all(spread.fullmatch(t) for t in spreads), spreads
    cheapest = grouped.sort_values("price_min").iloc[0]
    assert any(f"¥{cheapest['price_min']:,.2f}–" in t or t.endswith(f"¥{cheapest['price_min']:,.2f}") for t in spreads)
    firsts = page.eval_on_selector_all(".offer-listing.cheapest .price", "els => els.map(e => e.textContent)")
    assert firsts and all(t.startswith("cheapest ¥") for t in firsts), firsts
    for k in range(1, len(DEMO_SEEDS) + 1):
        widths = _pictures_loaded(page, f"#seed-{k}", ".offer-listings img")
        assert all(width > 0 for width in widths), (k, widths)
    assert "rendered from the embedded sandbox's catalogue" in page.inner_text(".summary")
    assert not problems, problems


def test_the_report_fits_a_phone_sized_screen(crawled: tuple[Path, dict[str, Any], SandboxProcess],
                                              browser: Any) -> None:
    datasets, manifest, _ = crawled
    page, problems = _open(browser, datasets / "_reports" / f"{manifest['run_id']}.html", width=390, height=844)
    _pictures_loaded(page, "#seed-1")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
    assert not problems, problems


def test_scrapy_report_writes_the_same_report_again(crawled: tuple[Path, dict[str, Any], SandboxProcess],
                                                    tmp_path: Path) -> None:
    datasets, manifest, _ = crawled
    run_id = manifest["run_id"]
    written = (datasets / "_reports" / f"{run_id}.html").read_bytes()
    command = [sys.executable, "-m", "scrapy", "report", run_id, "-s", f"DATASET_DIR={datasets}",
               "-s", f"REPORT_PAGE_SEEDS={PAGE_SEEDS}", "-o", str(tmp_path / "again.html")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "again.html")
    assert (tmp_path / "again.html").read_bytes() == written

    unknown = subprocess.run([*command[:4], "20260101T000000Z-000000", "-s", f"DATASET_DIR={datasets}"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (f"scrapy report: error: no committed run 20260101T000000Z-000000 under "
                                      f"{datasets} (the runs there: {run_id})"), unknown.stderr
