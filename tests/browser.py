"""Open a report page in headless Chromium (Debian's `chromium`, driven by Playwright): every image must
load and the page must log no error. Skips with a reason where Chromium or Playwright is missing (a
failure under OPENWFM_STRICT_TESTS=1, where .ci/run installs both)."""

import shutil
from pathlib import Path

import pytest


def check_page(path: Path, screenshot: Path | None = None) -> int:
    """The number of images on the page at ``path``, after asserting that all loaded without errors."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), "
                                   "i.complete && i.naturalWidth > 0])")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not errors, f"{path}: console errors {errors[:3]}"
    broken = [src for src, ok in images if not ok]
    assert not broken, f"{path}: images that do not load: {broken[:5]}"
    return len(images)
