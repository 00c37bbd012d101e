"""A resumed run whose server now reports another model than the stored responses came from stops with one
line and writes nothing, unless --allow-model-change (issue 13, part 8); what the server reports (listed ids,
vLLM's weights path) is recorded with the model."""

from __future__ import annotations

from cli_inproc import build_workspace, invoke
from mijabench.store import Store
from stub_server import StubServer


def _run(capsys, monkeypatch, ws, *args):
    code, out, err = invoke(capsys, monkeypatch, "run", "-b", "b", "-w", str(ws), "--progress", "none", *args)
    return code, out, err


def test_other_weights_behind_the_same_name_stop_a_resumed_run(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    db = build_workspace(ws)
    with StubServer(models=["m"], roots={"m": "/models/llama-3-8b"}) as stub:
        model = f"openai:m@{stub.url}"
        code, out, err = _run(capsys, monkeypatch, ws, "-m", model)
        assert code == 0, out + err
        with Store(ws) as store:
            meta = next(m["meta"] for m in store.models() if m["name"] == "openai:m")
        assert meta["served_roots"] == {stub.url: "/models/llama-3-8b"} and meta["listed_models"] == {
            stub.url: ["m"]}

        stub.roots["m"] = "/models/qwen-7b"  # the server was restarted on other weights, same model id
        before = db.read_bytes()
        code, out, err = _run(capsys, monkeypatch, ws, "-m", model)
        lines = [line for line in (out + err).splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, out + err
        assert "/models/llama-3-8b" in lines[0] and "/models/qwen-7b" in lines[0]
        assert "--allow-model-change" in lines[0]
        assert db.read_bytes() == before

        code, out, err = _run(capsys, monkeypatch, ws, "-m", model, "--allow-model-change")
        assert code == 0, out + err
    with Store(ws) as store:
        meta = next(m["meta"] for m in store.models() if m["name"] == "openai:m")
    assert meta["served_roots"] == {stub.url: "/models/qwen-7b"}  # recorded: the next resume compares to it


def test_another_model_id_under_a_stored_name_is_refused(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    with StubServer(models=["m", "m2"]) as stub:
        first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
        first.write_text(f"model: openai:m@{stub.url}\nname: target\n")
        second.write_text(f"model: openai:m2@{stub.url}\nname: target\n")
        assert _run(capsys, monkeypatch, ws, "-m", str(first))[0] == 0
        code, out, err = _run(capsys, monkeypatch, ws, "-m", str(second))
        assert code == 2 and "model id 'm'" in err and "model id 'm2'" in err, out + err
        # the same server and weights again resume without a word
        code, out, err = _run(capsys, monkeypatch, ws, "-m", str(first))
        assert code == 0 and "already stored" in out, out + err


def test_a_name_without_stored_responses_is_not_checked(tmp_path, capsys, monkeypatch):
    ws = tmp_path / "ws"
    build_workspace(ws)
    with Store(ws) as store:  # metadata left by a run that stored no response
        store.put_model("openai:m", "openai:m@http://old/v1", meta={"served_model": "m",
                                                                     "served_roots": {"x": "/old"}})
    with StubServer(models=["m"], roots={"m": "/new"}) as stub:
        code, out, err = _run(capsys, monkeypatch, ws, "-m", f"openai:m@{stub.url}")
    assert code == 0, out + err


def test_the_driver_side_check_for_ray_refuses_the_same_change(tmp_path, capsys, monkeypatch):
    import pytest

    from mijabench.backends.registry import parse_model
    from mijabench.errors import MijaError
    from mijabench.run.generate import check_servers

    ws = tmp_path / "ws"
    db = build_workspace(ws)
    with StubServer(models=["m"], roots={"m": "/w/a"}) as stub:
        assert _run(capsys, monkeypatch, ws, "-m", f"openai:m@{stub.url}")[0] == 0
        stub.roots["m"] = "/w/b"
        before = db.read_bytes()
        with Store(ws) as store:
            with pytest.raises(MijaError, match="weights '/w/b'"):
                check_servers(store, [parse_model(f"openai:m@{stub.url}")])
            check_servers(store, [parse_model(f"openai:m@{stub.url}")], allow_model_change=True)
        assert db.read_bytes() == before


def test_a_resumed_audit_stops_before_any_stage_on_other_weights(tmp_path):
    import pytest

    from mijabench.audit import make_config, run_audit
    from mijabench.errors import MijaError

    with StubServer(models=["m"], roots={"m": "/w/a"}) as stub:
        config = make_config({"models": [f"openai:m@{stub.url}"], "judges": ["rules:refusal-v1"],
                              "bench": "a", "sample_per_cell": 1, "report": {"resamples": 20}})
        with Store(tmp_path / "ws") as store:
            run_audit(store, config, progress=False)
        stub.roots["m"] = "/w/b"
        stages = []
        with Store(tmp_path / "ws") as store:
            counts = store.counts()
            with pytest.raises(MijaError, match="weights '/w/a'.*weights '/w/b'|weights '/w/b'"):
                run_audit(store, config, progress=False, on_stage=lambda n, name, note: stages.append(name))
            assert store.counts() == counts and stages == []  # stopped before the first stage
            run_audit(store, config, progress=False, allow_model_change=True)
