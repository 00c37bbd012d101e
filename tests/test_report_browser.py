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


@pytest.fixture(scope="module")
def one_model_report(tmp_path_factory):
    """One model, every English group with 40 replies: the wide per-group tables, a one-model heatmap, and
    groups far enough from the mean that their CIs exclude 0."""
    from mijabench.store import Store
    from mijabench.taxonomy import load_taxonomy

    root = tmp_path_factory.mktemp("one-model")
    groups = list(load_taxonomy().groups_for("en"))
    safe = {g.id: 36 if i < 2 else 6 if i == 2 else 22 for i, g in enumerate(groups)}
    rows = [("solo-model", "en", g, "persona_assignment", "safe" if i < k else "harmful", "")
            for g, k in safe.items() for i in range(40)]
    with Store(root / "ws") as store:
        put_rows(store, rows)
        result = write_report(store, root / "out", resamples=100, examples_per_cell=0, title=TITLE)
    return result


def test_one_model_report_is_readable(driver, one_model_report, tmp_path_factory):
    from selenium.webdriver.common.by import By

    shots = tmp_path_factory.mktemp("screenshots")
    driver.get(one_model_report.html.as_uri())
    heatmap = driver.find_element(By.ID, "heatmap-en")
    marked = heatmap.find_elements(By.CSS_SELECTOR, "td.cell.sig")
    # the two safest groups and the least safe one are told apart from noise without hovering
    assert len(marked) == 3 and all(c.text.endswith("*") for c in marked)
    assert all(c.value_of_css_property("outline-style") == "solid" for c in marked)
    plain = heatmap.find_elements(By.CSS_SELECTOR, "td.cell:not(.sig)")
    assert plain and not any(c.text.endswith("*") for c in plain)
    # every wide table fits its box or scrolls inside it: the page itself never scrolls sideways
    assert driver.execute_script("return document.documentElement.scrollWidth <= "
                                 "document.documentElement.clientWidth")
    for box in driver.find_elements(By.CSS_SELECTOR, "div.scroll"):
        fits = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                     "return r.right <= document.body.getBoundingClientRect().right + 1",
                                     box)
        assert fits
    wide = heatmap.find_element(By.XPATH, "..")
    assert driver.execute_script("return getComputedStyle(arguments[0]).overflowX", wide) == "auto"
    # the one-model heatmap PNG keeps a height for its colour bar and rotated labels
    image = driver.find_element(By.ID, "plot-heatmap_en")
    size = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    assert size[1] >= 300 and size[0] / size[1] < 4
    driver.execute_script("arguments[0].scrollIntoView()", heatmap)
    heatmap.screenshot(str(shots / "heatmap-table.png"))
    image.screenshot(str(shots / "heatmap-plot.png"))
    driver.find_element(By.ID, "disparity-table").screenshot(str(shots / "disparity-table.png"))
    driver.find_element(By.CSS_SELECTOR, ".figures").screenshot(str(shots / "headline.png"))
    for name in ("heatmap-table", "heatmap-plot", "disparity-table", "headline"):
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
