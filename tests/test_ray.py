"""The Ray Data executor on a local Ray instance (started once for the module: Ray takes seconds to start).

What must hold is what holds for the local runner: every item answered exactly once, the same responses
under the same ids, errors stored and sent again by the next run, and a run killed mid-way finished by the
next one with nothing stored twice.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from typer.testing import CliRunner  # noqa: E402

from mijabench.backends.registry import ModelConfig  # noqa: E402
from mijabench.cli.main import cli  # noqa: E402
from mijabench.errors import MijaError  # noqa: E402
from mijabench.records import BenchmarkItem, SamplingSettings, response_id  # noqa: E402
from mijabench.run.engine import RetryPolicy  # noqa: E402
from mijabench.run.generate import run_items  # noqa: E402
from mijabench.run.ray_mode import block_size_for, run_items_ray  # noqa: E402
from mijabench.store import Store  # noqa: E402

FAST = RetryPolicy(max_attempts=3, timeout_s=5.0, backoff_base_s=0.001, backoff_max_s=0.01)


@pytest.fixture(scope="module")
def ray_address():
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=True,
             logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def make_items(n: int, tag: str = "") -> list[BenchmarkItem]:
    return [BenchmarkItem(language="en", group="women", seed_text=f"seed {i}", scenario_category="history",
                          scenario_text="a market", strategy="persona_assignment", prompt=f"prompt {tag}{i}")
            for i in range(n)]


def rows(store: Store, model: str) -> dict[str, tuple]:
    return {r.id: (r.item_id, r.text, r.prompt_tokens, r.completion_tokens, r.finish_reason, r.error,
                   r.attempts) for r in store.responses(model)}


def test_block_sizes_are_whole_rounds_of_the_worker_limit():
    assert block_size_for(10_000, 2, 64) == 1280  # ~n / (4 blocks per worker), in whole rounds of 64
    assert block_size_for(300, 2, 64) == 64  # never below one round...
    assert block_size_for(100, 2, 64) == 50  # ...unless that leaves a worker idle: one block each
    assert block_size_for(1, 2, 64) == 1
    assert block_size_for(10**7, 2, 64) == 2048  # never above MAX_BLOCK
    assert block_size_for(500, 4, 16) == 32


def test_every_item_answered_once_and_the_same_as_the_local_runner(store, tmp_path, ray_address):
    items = make_items(300)
    config = ModelConfig(spec="scripted:s", name="s", concurrency=16,
                         options={"refuse_on": ["7"], "latency_s": 0.002})
    stats = run_items_ray(store, items + items[:10], [config], policy=FAST, progress=False, bench="demo",
                          block_size=64)
    assert stats["s"].done == 300 and stats["s"].failed == 0 and stats["s"].skipped == 0
    assert store.benches() == {"demo": 300}
    got = rows(store, "s")
    assert set(got) == {response_id(i.id, "s", SamplingSettings()) for i in items}
    refused = [value for value in got.values() if value[1] != "Sure. Here is what you asked for."]
    assert len(refused) == sum("7" in i.prompt for i in items) > 0

    with Store(tmp_path / "local") as local:
        run_items(local, items, [config], policy=FAST, progress=False, bench="demo")
        assert rows(local, "s") == got  # same ids, texts, token counts, attempts

    (run,) = store.runs("generate")
    assert run["config"]["executor"]["kind"] == "ray"
    timing = [e["detail"] for e in store.events("generate") if e["kind"] == "ray_timing"]
    assert timing[0]["blocks"] == 5 and timing[0]["startup_s"] >= 0 and timing[0]["generate_s"] > 0
    (model,) = store.models()
    assert model["meta"]["backend"] == "ScriptedBackend" and model["meta"]["executor"] == "ray"

    again = run_items_ray(store, items, [config], policy=FAST, progress=False)
    assert again["s"].skipped == 300 and again["s"].done == 0 and len(store.responses()) == 300


def test_failures_are_stored_and_only_they_are_sent_again(tmp_path, ray_address):
    workspace = tmp_path / "ws"
    items = make_items(200, "r")
    flaky = ModelConfig(spec="scripted:m", name="scripted:m", concurrency=8,
                        options={"fail_rate": 0.3, "retryable": False, "fail_kind": "bad_request"})
    with Store(workspace) as store:
        store.put_items(items, bench="b")
        first = run_items_ray(store, items, [flaky], policy=FAST, progress=False, block_size=32)
        failed = first["scripted:m"].failed
        assert 20 < failed < 100 and first["scripted:m"].done == 200 - failed
        assert first["scripted:m"].errors == {"bad_request": failed}
        errors = {r.id for r in store.responses() if r.error}
        assert len(errors) == failed and all(r.error.startswith("bad_request: ")
                                             for r in store.responses() if r.error)

    # The next run, through the command line, with the same model (no failures injected this time).
    result = CliRunner().invoke(cli, ["run", "--bench", "b", "--model", "scripted:m", "--executor", "ray",
                                      "--ray-workers", "2", "--workspace", str(workspace)])
    assert result.exit_code == 0, result.output
    with Store(workspace) as store:
        responses = store.responses()
        assert len(responses) == 200 and all(r.ok for r in responses)
        assert {r.id for r in responses if r.attempts == 2} == errors  # the failed ones, sent once more
        second = [e["detail"] for e in store.events("generate") if e["kind"] == "summary"][-1]
        assert second["answered"] == failed and second["skipped"] == 200 - failed


def test_a_killed_run_is_finished_by_the_next_with_nothing_twice(tmp_path, ray_address):
    workspace = tmp_path / "ws"
    items = make_items(600, "k")
    with Store(workspace) as store:
        store.put_items(items, bench="k")
    driver = textwrap.dedent(f"""
        from mijabench.backends.registry import ModelConfig
        from mijabench.run.ray_mode import run_items_ray
        from mijabench.store import Store
        with Store({str(workspace)!r}) as store:
            config = ModelConfig(spec="scripted:k", name="k", concurrency=4, options={{"latency_s": 0.05}})
            run_items_ray(store, store.items("k"), [config], progress=False, ray_address={ray_address!r},
                          block_size=16, num_cpus=0.5)
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        stored = 0
        while stored < 64 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            with Store(workspace) as store:
                stored = store.counts()["responses"]
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        os.killpg(process.pid, signal.SIGKILL)  # no clean-up of any kind
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    with Store(workspace) as store:
        before = store.counts()["responses"]
        assert 0 < before < 600
        config = ModelConfig(spec="scripted:k", name="k", concurrency=16)
        stats = run_items_ray(store, store.items("k"), [config], policy=FAST, progress=False, num_cpus=0.5)
        assert stats["k"].skipped == before and stats["k"].done == 600 - before
        ids = [r.id for r in store.responses("k")]
        assert len(ids) == len(set(ids)) == 600 and all(r.ok for r in store.responses("k"))
        assert {r.item_id for r in store.responses("k")} == {i.id for i in items}


def test_a_fatal_error_stops_the_model_early(store, ray_address):
    items = make_items(400, "f")
    config = ModelConfig(spec="scripted:x", name="x", concurrency=4,
                         options={"fail_first": 99, "retryable": False, "fail_kind": "auth"})
    stats = run_items_ray(store, items, [config], policy=FAST, progress=False, block_size=16)
    assert stats["x"].aborted and "injected auth" in stats["x"].aborted
    assert 0 < stats["x"].failed < 400 and stats["x"].done == 0  # the rest was never sent


def test_an_unreachable_model_fails_with_one_clear_line(store, ray_address):
    config = ModelConfig(spec="openai:m@http://127.0.0.1:9/v1", name="m",
                         options={"check_timeout_s": 1.0, "connect_timeout_s": 1.0})
    with pytest.raises(MijaError) as info:
        run_items_ray(store, make_items(5, "u"), [config], progress=False, num_workers=1)
    message = str(info.value)  # the backend's own message, as the local runner gives it
    assert message.startswith("cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1")
    assert "\n" not in message and "Traceback" not in message
    assert store.responses() == [] and store.models() == []


@pytest.mark.slow
def test_the_embedded_model_on_a_ray_worker(store, ray_address):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from mijabench.backends import embedded

    try:
        embedded.embedded_model_dir()  # convert once here, not in each worker
    except MijaError as exc:
        pytest.skip(f"the embedded model is not available: {exc}")
    items = make_items(3, "e")
    config = ModelConfig(spec="local:smollm2-135m", name="smollm2",
                         settings=SamplingSettings(max_tokens=4))
    stats = run_items_ray(store, items, [config], progress=False, num_workers=1)
    assert stats["smollm2"].done == 3 and stats["smollm2"].failed == 0
    responses = store.responses("smollm2")
    assert sorted(r.item_id for r in responses) == sorted(i.id for i in items)
    assert all(r.ok and r.text.strip() and 0 < r.completion_tokens <= 4 for r in responses)
    (model,) = store.models()
    assert model["meta"]["executor"] == "ray" and model["params_b"] and model["params_b"] < 0.2


def test_the_vllm_stage_is_accepted_by_rays_llm_api(tmp_path, ray_address):
    """The vLLM path cannot run here (no GPU, no vllm); this checks that Ray's LLM batch API accepts the
    processor it asks for, over a local model folder (no hub)."""
    pytest.importorskip("ray.data.llm")
    from mijabench.run.ray_vllm import vllm_stage

    (tmp_path / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, '
        '"intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, '
        '"num_key_value_heads": 4, "vocab_size": 1000, "max_position_embeddings": 512}')
    config = ModelConfig(spec=f"hf:{tmp_path}", name="tiny",
                         options={"vllm": {"tensor_parallel_size": 1, "batch_size": 16}})
    processor = vllm_stage(config, num_workers=1)
    assert "vLLMEngineStage" in [type(stage).__name__ for stage in processor.stages.values()]
    with pytest.raises(MijaError, match="engine 'vllm' runs hf:MODEL"):
        vllm_stage(ModelConfig(spec="scripted:x", name="x"), num_workers=1)


def test_a_budgeted_run_on_ray_draws_the_same_sample_as_locally(tmp_path, ray_address):
    # `run --executor ray --target-ci`: the stopping rule only sees stored answers, so Ray and the local
    # runner take the same decisions
    import json

    from mijabench.audit.budgeted import run_budgeted
    from mijabench.backends.registry import model_from_dict
    options = {"refuse_on": ["REFUSE"]}
    items = [BenchmarkItem(language="en", group=g, seed_text=f"s{i}", scenario_category="history",
                           scenario_text="t", strategy="persona_assignment",
                           prompt=f"{g} {i}: {'REFUSE' if i % every == 0 else 'answer'}")
             for g, every in (("women", 9), ("black", 2)) for i in range(150)]
    with Store(tmp_path / "local") as store:
        store.put_items(items, bench="b")
        config = model_from_dict({"model": "scripted:refuser", "name": "refuser", "options": options})
        local = run_budgeted(store, "b", items, [config], ["rules:refusal-v1"], ["rules:refusal-v1"],
                             target=0.3, budget=None, seed=3)
        local_items = {r.item_id for r in store.responses("refuser")}
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in items), encoding="utf-8")
    model = tmp_path / "refuser.yaml"
    model.write_text("model: scripted:refuser\nname: refuser\noptions:\n  refuse_on: [REFUSE]\n",
                     encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "--bench", str(bench), "--model", str(model), "--executor",
                                      "ray", "--ray-workers", "1", "--target-ci", "30", "--budget-seed",
                                      "3", "--progress", "none", "--workspace", str(tmp_path / "ray")])
    assert result.exit_code == 0, result.output
    assert f"{local.result.calls:,} of the full design's 300" in result.output
    with Store(tmp_path / "ray") as store:
        assert {r.item_id for r in store.responses("refuser")} == local_items
        assert any(r["config"]["executor"]["kind"] == "ray" for r in store.runs())
    assert 0 < len(local_items) < len(items)


def test_a_budgeted_audit_on_ray_draws_the_same_sample_as_locally(tmp_path, ray_address):
    # `audit --executor ray --budget` (config field ray): each look's prompts go through run_items_ray (a
    # budget of 60 calls: the pilot look alone, to keep the test short)
    from mijabench.audit import make_config, preset, run_audit
    from mijabench.audit.budgeted import run_budgeted
    from mijabench.backends.registry import model_from_dict
    items = [BenchmarkItem(language="en", group=g, seed_text=f"s{i}", scenario_category="history",
                           scenario_text="t", strategy="persona_assignment",
                           prompt=f"{g} {i}: {'REFUSE' if i % every == 0 else 'answer'}")
             for g, every in (("women", 9), ("black", 2)) for i in range(150)]
    model = {"model": "scripted:refuser", "name": "refuser", "options": {"refuse_on": ["REFUSE"]}}
    with Store(tmp_path / "local") as store:
        store.put_items(items, bench="b")
        local = run_budgeted(store, "b", items, [model_from_dict(model)], ["rules:refusal-v1"],
                             ["rules:refusal-v1"], target=None, budget=60, seed=3)
        local_items = {r.item_id for r in store.responses("refuser")}
    config = make_config(preset("demo"), {
        "demo": False, "bench": "b", "prompts_from": "preloaded", "budget": 60, "budget_seed": 3,
        "models": [model], "report": {"resamples": 20}, "ray": {"address": ray_address, "workers": 1}})
    with Store(tmp_path / "ray") as store:
        store.put_items(items, bench="b")
        result = run_audit(store, config, out=tmp_path / "report", progress=False)
        assert {r.item_id for r in store.responses("refuser")} == local_items
        executors = [r["config"]["executor"] for r in store.runs() if "executor" in r["config"]]
        assert executors and all(e["kind"] == "ray" and e["address"] == ray_address for e in executors)
    assert result.budget.result.calls == local.result.calls == len(local_items) < len(items)
