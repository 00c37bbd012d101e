from __future__ import annotations

from pathlib import Path

import pytest

from mijabench.store import Store

SHARED_TOXIGEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "toxigen"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "ws") as s:
        yield s


@pytest.fixture
def toxigen_dir() -> Path:
    if not (SHARED_TOXIGEN / "annotated.jsonl").exists():
        pytest.skip("shared ToxiGen data not present")
    return SHARED_TOXIGEN
