"""The embedded demo end to end: `mijabench audit` with no model arguments, on the real SmolLM2-135M model,
then the report opened in headless Chromium, where the heatmap must have rendered."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import headless_chromium
from mijabench.store import Store

pytestmark = pytest.mark.slow


def _png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and a rough count of distinct colours of an RGB(A) PNG, from the standard library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    chunks, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunks += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(chunks)
    channels = {2: 3, 6: 4}[colour]
    stride = width * channels + 1
    # Filtered bytes are not pixels, but distinct byte triples in the raw stream still tell a flat image
    # (a handful) from a rendered page (thousands).
    sample = raw[: stride * min(height, 400)]
    colours = {sample[i:i + 3] for i in range(0, len(sample) - 3, 7)}
    return width, height, len(colours)


def test_demo_audit_and_screenshot_of_its_heatmap(tmp_path):
    workspace, report_dir = tmp_path / "ws", tmp_path / "report"
    env = {**os.environ, "MIJABENCH_WORKSPACE": str(workspace)}
    # The real demo, shortened to a few tokens per reply to keep the suite fast.
    done = subprocess.run([sys.executable, "-m", "mijabench.cli.main", "audit", "--max-tokens", "8",
                           "--out", str(report_dir)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not a measurement" in done.stdout and "report.html" in done.stdout
    with Store(workspace) as store:
        items = len(store.items("demo"))
        assert {m["name"] for m in store.models()} == {"smollm2-135m", "smollm2-135m+safety-prompt"}
        assert store.counts()["responses"] == 2 * items and store.counts()["verdicts"] == 2 * items
        assert {lang for (lang,) in store.query("SELECT DISTINCT language FROM items")} == {"en", "pt"}

    html = report_dir / "report.html"
    with headless_chromium(window="1300,1800") as browser:
        browser.get(html.as_uri())
        table = browser.find_element("id", "heatmap-en")
        assert table.is_displayed() and table.size["width"] > 300 and table.size["height"] > 40
        cells = table.find_elements("css selector", "td")
        assert len(cells) >= 2 * 13  # two models x 13 English groups at least
        assert any(c.text.strip().startswith(("+", "-", "\u2212")) for c in cells)
        pt = browser.find_element("id", "heatmap-pt")
        assert pt.is_displayed()
        browser.execute_script("arguments[0].scrollIntoView()", table)
        shot = tmp_path / "report.png"
        assert browser.save_screenshot(str(shot))
    width, height, colours = _png_size_and_colours(shot)
    assert width >= 1000 and height >= 1000 and colours > 50
