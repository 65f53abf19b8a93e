"""The service's web page in a real headless Chromium (Debian's, driven by Playwright), on a phone-sized screen.

Set UPDATE_SCREENSHOTS=1 to write docs/serve.png from the test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from browsers import CHROMIUM, CHROMIUM_ARGS
from datasets import REPO, write_seed_photos
from serving import ServeProcess

from sandbox.testing import SandboxProcess


def poll(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Wait until ``expression`` holds in the page. (Playwright's wait_for_function evaluates its predicate with
    eval, which the page's Content-Security-Policy refuses; page.evaluate goes through the debugger.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not within {timeout} s: {expression}"
        time.sleep(0.05)


def test_the_page_uploads_a_photo_and_shows_its_matches_as_a_grid(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make install` as root installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    photo = write_seed_photos(tmp_path / "photos", 1, size=240)[0]
    with SandboxProcess() as sandbox, ServeProcess(sandbox.endpoint, "-s", "IMAGESEARCH_QUOTA=",
                                                   cache_dir=tmp_path / "cache") as service, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                has_touch=True)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(service.url + "/", wait_until="load")
        assert page.locator("#go").is_disabled()
        page.set_input_files("#photo", str(photo))
        page.locator("#go").click()
        page.wait_for_selector("#grid .card", timeout=30_000)
        cards = page.locator("#grid .card")
        count = cards.count()
        assert count == 20, count
        for i in range(count):  # the pictures load lazily, as they come into view
            cards.nth(i).scroll_into_view_if_needed()
        poll(page, "Array.from(document.querySelectorAll('#grid img')).every(i => i.complete)")
        page.evaluate("window.scrollTo(0, 0)")
        widths: list[int] = page.eval_on_selector_all("#grid img", "imgs => imgs.map(i => i.naturalWidth)")
        assert all(width > 0 for width in widths), widths
        first: dict[str, Any] = page.evaluate("""() => { const c = document.querySelector('#grid .card');
            return {href: c.querySelector('a').href, title: c.querySelector('.title').textContent,
                    price: c.querySelector('.price').textContent, shop: c.querySelector('.nick').textContent}; }""")
        assert first["href"].startswith("https://") and "id=" in first["href"], first
        assert first["title"] and first["price"].startswith("¥") and first["shop"], first
        assert "20 matches (1 call" in page.inner_text("#status")
        # Phone-sized: the grid fits the screen's width, two columns.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        boxes = [cards.nth(i).bounding_box() for i in range(2)]
        assert boxes[0] and boxes[1] and boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] > boxes[0]["x"]
        page.screenshot(path=str(tmp_path / "serve.png"))
        if os.environ.get("UPDATE_SCREENSHOTS"):
            shutil.copy(tmp_path / "serve.png", REPO / "docs" / "serve.png")
        # The same photo again: from the cache.
        page.locator("#go").click()
        poll(page, "document.querySelector('#status').textContent.includes('from the cache')")
        browser.close()
    assert not problems, problems
    # Everything the page loaded came from the service or the listings' picture host: no CDN.
    hosts = {url.split("/")[2] for url in requested if url.startswith("http")}
    assert hosts <= {service.url.split("/")[2], sandbox.url.split("/")[2]}, hosts
