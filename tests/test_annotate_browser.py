"""The annotation page in a real browser: Debian's chromium driven by selenium against a real uvicorn
server. Labels several items, skips one, reloads, checks the export; and a reply that tries to run script
runs nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromedriver in /usr/bin"),
]
pytest.importorskip("selenium")
uvicorn = pytest.importorskip("uvicorn")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from conftest import headless_chromium  # noqa: E402
from mijabench.annotate import db, draw_sample, export_labels  # noqa: E402
from mijabench.annotate.web import annotator_order, create_app  # noqa: E402
from mijabench.store import Store  # noqa: E402
from test_annotate import HOSTILE_REPLY, build_store  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A real uvicorn server in a background thread, on a free loopback port."""
    store_path = build_store(tmp_path / "ws", languages=("en",), groups=("women",), hostile=True)
    with Store(store_path) as store:
        draw_sample(store, per_cell=3, seed=0, name="val")
    port = _free_port()
    config = uvicorn.Config(create_app(store_path, "val"), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store_path
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    with headless_chromium(window="1280,1600") as driver:
        driver.set_page_load_timeout(30)
        yield driver


def _click_and_wait(driver, element) -> None:
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 15).until(lambda _: _gone(page))


def _gone(element) -> bool:
    """Whether ``element`` left the document (the next page replaced it). Chromium answers a query on a
    node of the page being replaced either as a stale element or, mid-navigation, with "Node with given id
    does not belong to the document"; both mean it is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def test_label_skip_reload_export_and_nothing_runs(server, browser, tmp_path):
    base, store_path = server
    browser.get(base + "/")
    assert "offensive by design" in browser.find_element(By.ID, "content-warning").text
    browser.find_element(By.ID, "name").send_keys("Ana")
    browser.find_element(By.ID, "ack").click()
    _click_and_wait(browser, browser.find_element(By.ID, "begin"))
    assert browser.current_url == base + "/item/1"

    clicked: dict[str, str] = {}
    for label, note in [("harmful", "complied <b>fully</b>"), ("safe", ""), ("skip", ""), ("harmful", "")]:
        rid = browser.find_element(By.NAME, "response_id").get_attribute("value")
        if note:
            browser.find_element(By.ID, "note").send_keys(note)
        _click_and_wait(browser, browser.find_element(By.ID, f"label-{label}"))
        clicked[rid] = label
    assert browser.current_url == base + "/item/5"

    browser.refresh()
    progress = browser.find_element(By.ID, "progress").text
    assert "Item 5 of 10" in progress and "3 labelled" in progress and "1 skipped" in progress

    # the hostile reply: shown as text, and neither its script nor its onerror handler ran
    with Store(store_path) as store:
        ids = [e.response_id for e in db.sample_entries(store, "val")]
        hostile = next(rid for rid in ids if "pwned" in (store.query(
            "SELECT text FROM responses WHERE id=?", (rid,))[0][0]))
    position = annotator_order(ids, "val", "Ana").index(hostile) + 1
    browser.get(f"{base}/item/{position}")
    time.sleep(0.5)  # give a broken image's onerror time to fire, were there one
    assert browser.title == f"Item {position} of 10"
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    reply = browser.find_element(By.ID, "reply")
    assert reply.text == HOSTILE_REPLY
    assert reply.find_elements(By.CSS_SELECTOR, "*") == []
    assert browser.find_elements(By.TAG_NAME, "script") == []

    _click_and_wait(browser, browser.find_element(By.ID, "stop"))
    assert "3 labelled, 1 skipped" in browser.find_element(By.ID, "summary").text

    with Store(store_path) as store:
        report = export_labels(store, tmp_path / "labels.jsonl")
    rows = [json.loads(line) for line in report.labels_path.read_text().splitlines()]
    expected = {(rid, label) for rid, label in clicked.items() if label != "skip"}
    assert {(r["response_id"], r["label"]) for r in rows} == expected and len(rows) == 3
    assert {r["annotator"] for r in rows} == {"Ana"} and report.skipped == 1
    assert "complied <b>fully</b>" in {r["note"] for r in rows}
