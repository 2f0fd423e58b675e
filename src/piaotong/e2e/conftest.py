"""Browser tests: real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

They need the `playwright` package and a Chromium binary; `.ci/run` installs both. Elsewhere they
skip with the reason, unless PIAOTONG_REQUIRE_BROWSER=1 (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("PIAOTONG_CHROMIUM", "/usr/bin/chromium")
# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# for set-up happen outside it, but Django cannot tell, so allow them explicitly.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _unavailable() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM}"
    return None


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# while it is open, and tests after the browser tests on the same worker call asyncio.run().
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason:
        if os.environ.get("PIAOTONG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
