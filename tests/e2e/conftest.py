"""Browser tests: Playwright driving Debian's Chromium (never a downloaded browser)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faces"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-wide: Playwright's sync API keeps an event loop running on this thread until it
    stops, which would break later tests that run asyncio themselves."""
    if not Path(CHROMIUM).exists():  # make test installs it when it can (as root)
        pytest.skip(f"{CHROMIUM} is missing: run 'sudo apt-get install -y chromium' (make test does, as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def faces_images(tmp_path: Path) -> Callable[[int], list[Path]]:
    """``make(n)``: n images from the faces example's generator, the last one corrupt."""

    def make(count: int) -> list[Path]:
        spec = importlib.util.spec_from_file_location("faces_make_data", EXAMPLE / "make_data.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        made: list[Path] = module.make(count, tmp_path / "images")
        return made

    return make
