"""The report in headless Chromium: responses carrying <script> and onerror= run nothing, their text is shown
as text, and the heatmap renders (table cells and the embedded PNG). Skipped when chromium, chromedriver or
selenium are missing (scripts/setup.sh --dev installs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import headless_chromium
from mijabench.report import write_report
from test_analysis import put_rows

pytestmark = pytest.mark.browser

SCRIPT = "<script>document.title='pwned';window.__pwned=1</script>"
ONERROR = "<img src=x onerror=\"document.title='pwned-onerror';window.__pwned=2\">"
SVG = "<svg onload=\"window.__pwned=3\"></svg>"
TITLE = "browser check report"
GROUPS = {"women": "SSSH", "black": "SHHH", "muslim": "SSHH"}


@pytest.fixture(scope="module")
def driver():
    with headless_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from mijabench.store import Store

    root = tmp_path_factory.mktemp("browser")
    rows = []
    for model in ("model-a", "model-b"):
        for group, labels in GROUPS.items():
            rows += [(model, "en", group, "persona_assignment", "safe" if c == "S" else "harmful", "",
                      f"prompt {SCRIPT}", f"reply {ONERROR} {SVG}") for c in labels]
    with Store(root / "ws") as store:
        put_rows(store, rows)
        result = write_report(store, root / "out", resamples=100, examples_per_cell=1, title=TITLE)
    return result.html


def test_detector_sees_an_inline_script_run(driver, tmp_path: Path):
    """Control: the same detection catches a script that does run, so the checks below can fail."""
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>{TITLE}</title></head><body>{SCRIPT}</body></html>")
    driver.get(page.as_uri())
    assert driver.title == "pwned"
    assert driver.execute_script("return window.__pwned") == 1


def test_no_script_runs_and_text_is_escaped(driver, report):
    from selenium.webdriver.common.by import By

    driver.get(report.as_uri())
    assert driver.title == TITLE
    assert driver.execute_script("return window.__pwned === undefined") is True
    assert driver.find_elements(By.TAG_NAME, "script") == []
    assert driver.execute_script("return document.querySelectorAll('[onerror],[onload]').length") == 0
    # open the collapsed examples and read the hostile strings back as plain, visible text
    examples = driver.find_element(By.ID, "examples")
    for _ in range(3):  # model -> group -> example
        for summary in examples.find_elements(By.TAG_NAME, "summary"):
            if summary.is_displayed() and summary.find_element(By.XPATH, "..").get_attribute("open") is None:
                summary.click()
    texts = [pre.text for pre in examples.find_elements(By.TAG_NAME, "pre") if pre.is_displayed()]
    assert any(SCRIPT in t for t in texts)
    assert any(ONERROR in t and SVG in t for t in texts)
    assert driver.title == TITLE and driver.execute_script("return window.__pwned === undefined") is True


def test_heatmap_renders(driver, report):
    from selenium.webdriver.common.by import By

    driver.get(report.as_uri())
    heatmap = driver.find_element(By.ID, "heatmap-en")
    assert heatmap.is_displayed()
    cells = heatmap.find_elements(By.CSS_SELECTOR, "td.cell")
    assert len(cells) == 2 * len(GROUPS)
    # model-a: women .75, black .25, muslim .5 -> mean .5; columns in taxonomy order: black, muslim, women
    assert [c.text for c in cells[:3]] == ["-25.0", "+0.0", "+25.0"]
    colours = {c.value_of_css_property("background-color") for c in cells[:2]}
    assert len(colours) == 2 and "rgba(0, 0, 0, 0)" not in colours  # the hashed style block applied
    assert "95% CI" in cells[0].get_attribute("title")
    image = driver.find_element(By.ID, "plot-heatmap_en")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
