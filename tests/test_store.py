import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from mijabench.records import BenchmarkItem, Response, SamplingSettings, Scenario, Seed, Verdict
from mijabench.store import Store, export_all, workspace_path
from mijabench.store.schema import TABLES


def _item(n: int = 0) -> BenchmarkItem:
    return BenchmarkItem(language="en", group="women", seed_text=f"seed {n}", scenario_category="history",
                         scenario_text="a museum at night", strategy="persona_assignment",
                         prompt=f"prompt {n}", provenance={"rewriter": "template"})


def test_ids_are_stable_and_content_based():
    assert _item(1).id == _item(1).id
    assert _item(1).id != _item(2).id
    s = SamplingSettings()
    assert s.key == SamplingSettings().key != SamplingSettings(temperature=0.7).key


def test_workspace_path_is_the_argument_else_the_environment_else_the_default(monkeypatch, tmp_path):
    from mijabench import Workspace
    from mijabench.integrations.inspect.items import load_items

    monkeypatch.delenv("MIJABENCH_WORKSPACE", raising=False)
    assert workspace_path(None) == workspace_path("") == Path("mijabench-workspace")
    monkeypatch.setenv("MIJABENCH_WORKSPACE", str(tmp_path / "env"))
    assert workspace_path(None) == workspace_path("") == Workspace().path == tmp_path / "env"
    assert workspace_path(tmp_path / "given") == Workspace(tmp_path / "given").path == tmp_path / "given"
    with Store(tmp_path / "env") as store:  # the Inspect task's benchmark names look in the same folder
        item = BenchmarkItem(language="en", group="women", seed_text="s", scenario_category="history",
                             scenario_text="t", strategy="persona_assignment", prompt="p")
        store.put_items([item], bench="b")
    assert load_items("b")[1] == f"{tmp_path / 'env' / 'mijabench.sqlite'}#b"


def test_round_trip_every_record(store: Store):
    seed = Seed(language="pt", group="elderly", text="texto", source="demo", meta={"row": 3})
    scen = Scenario(language="en", category="history", text="a library", provenance={"model": "x"})
    item = _item()
    resp = Response(item_id=item.id, model="m", settings=SamplingSettings(max_tokens=5).to_dict(),
                    text="hi", prompt_tokens=3, completion_tokens=1, latency_s=0.1, finish_reason="stop")
    verdict = Verdict(response_id=resp.id, judge="rules", label="safe", raw="{}", reasoning="r")
    store.put_seeds([seed])
    store.put_scenarios([scen])
    store.put_items([item], bench="b1")
    store.put_responses([resp])
    store.put_verdicts([verdict])
    assert store.seeds() == [seed]
    assert store.scenarios() == [scen]
    assert store.items("b1") == [item]
    assert store.items("other") == []
    assert store.responses() == [resp]
    assert store.verdicts() == [verdict]
    assert store.benches() == {"b1": 1}


def test_answers_are_never_overwritten_errors_are(store: Store):
    item = _item()
    settings = SamplingSettings().to_dict()
    store.put_responses([Response(item_id=item.id, model="m", settings=settings, error="boom")])
    assert store.answered_response_ids("m", SamplingSettings()) == set()
    store.put_responses([Response(item_id=item.id, model="m", settings=settings, text="ok")])
    store.put_responses([Response(item_id=item.id, model="m", settings=settings, text="second")])
    rows = store.responses()
    assert len(rows) == 1 and rows[0].text == "ok" and rows[0].error is None and rows[0].attempts == 2


def test_run_config_never_holds_secrets(store: Store, monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_API_KEY", "sk-very-secret-value")
    run_id = store.new_run("generate", {"api_key": "sk-very-secret-value", "url": "http://h/v1",
                                        "note": "uses sk-very-secret-value"})
    raw = store.path.read_bytes() + b"".join(p.read_bytes() for p in store.path.parent.glob("*-wal"))
    assert b"sk-very-secret-value" not in raw
    assert store.runs()[0]["id"] == run_id
    assert "api_key" not in store.runs()[0]["config"]


def test_export_parquet_and_jsonl(store: Store, tmp_path):
    store.put_items([_item(1), _item(2)])
    paths = export_all(store, tmp_path / "pq")
    assert pq.read_table(tmp_path / "pq" / "items.parquet").num_rows == 2
    assert len(paths) == len(TABLES) and {p.stem for p in paths} >= {"items", "responses", "annotations"}
    export_all(store, tmp_path / "js", "jsonl")
    lines = (tmp_path / "js" / "items.jsonl").read_text().splitlines()
    assert {json.loads(line)["prompt"] for line in lines} == {"prompt 1", "prompt 2"}


def test_store_survives_kill_mid_write(tmp_path):
    """A writer killed with SIGKILL inside a big transaction leaves the earlier data intact and nothing
    half-written."""
    ws = tmp_path / "ws"
    with Store(ws) as s:
        s.put_items([_item(i) for i in range(10)], bench="before")
    script = textwrap.dedent(f"""
        import os, signal
        from mijabench.store import Store
        from mijabench.records import BenchmarkItem
        s = Store({str(ws)!r})
        items = [BenchmarkItem(language='en', group='women', seed_text=str(i), scenario_category='history',
                 scenario_text='x', strategy='chain_of_thought', prompt=str(i)) for i in range(20000)]
        with s.transaction() as cur:
            for i, it in enumerate(items):
                cur.execute("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            (it.id, 'en', 'women', '', it.seed_text, '', 'history', 'x',
                             'chain_of_thought', it.prompt, '', '{{}}'))
                if i == 15000:
                    os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy())
    assert proc.returncode == -9
    with Store(ws) as s:
        assert len(s.items()) == 10
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_newer_schema_is_refused(tmp_path):
    ws = tmp_path / "ws"
    Store(ws).close()
    conn = sqlite3.connect(ws / "mijabench.sqlite")
    conn.execute("PRAGMA user_version=99")
    conn.close()
    import pytest

    from mijabench.errors import MijaError
    with pytest.raises(MijaError, match="newer"):
        Store(ws)


def test_a_new_store_has_large_pages_and_an_older_one_keeps_its_own(tmp_path):
    """A store is made with PAGE_SIZE pages (faster imports and full loads at scale); one made with SQLite's
    default 4 KiB pages by an earlier version opens, keeps them and its rows."""
    from mijabench.store.core import PAGE_SIZE

    with Store(tmp_path / "new") as store:
        store.put_items([_item(1)], bench="b")
        assert store.query("PRAGMA page_size")[0][0] == PAGE_SIZE == 16384
    old = tmp_path / "old" / "mijabench.sqlite"
    old.parent.mkdir()
    conn = sqlite3.connect(old)  # a file of 4 KiB pages, as SQLite made them before
    conn.execute("PRAGMA page_size=4096")
    conn.execute("CREATE TABLE keep (x)")
    conn.execute("INSERT INTO keep VALUES (42)")
    conn.commit()
    conn.close()
    with Store(old) as store:
        store.put_items([_item(2)], bench="b")
        assert store.query("PRAGMA page_size")[0][0] == 4096
        assert store.query("SELECT x FROM keep")[0][0] == 42 and len(store.items("b")) == 1
