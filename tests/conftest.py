from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from mijabench.store import Store

# the shared data folder sits beside the main checkout; a worktree is one level deeper, so look upwards
SHARED_TOXIGEN = next((p / "shared" / "data" / "toxigen" for p in Path(__file__).resolve().parents
                       if (p / "shared" / "data" / "toxigen").is_dir()),
                      Path(__file__).resolve().parents[2] / "shared" / "data" / "toxigen")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "ws") as s:
        yield s


@pytest.fixture
def toxigen_dir() -> Path:
    if not (SHARED_TOXIGEN / "annotated.jsonl").exists():
        pytest.skip("shared ToxiGen data not present")
    return SHARED_TOXIGEN


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


@contextmanager
def headless_chromium(window: str = "1280,2000"):
    """Debian's chromium driven by selenium, with the flags this offline machine needs; skips the calling
    test when chromium, chromedriver or selenium is missing (scripts/setup.sh --dev installs them)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("chromium or chromedriver not installed (scripts/setup.sh --dev)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a browser
    profile = tempfile.mkdtemp(prefix="mija-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
