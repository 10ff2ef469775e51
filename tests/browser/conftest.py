"""The browser tests' shared fixture: one headless chromium per test module."""

from __future__ import annotations

import pytest

from tests.browser.browser_support import headless_chromium, require_playwright


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(require_playwright()) as chromium:
        yield chromium
