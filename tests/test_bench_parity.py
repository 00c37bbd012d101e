"""Items built here and items loaded from the published benchmark's layout are the same record type, and
both go through run, judge and analysis unchanged."""

import dataclasses
import json
from pathlib import Path

from mijabench.analysis.paired import paired_analysis
from mijabench.analysis.table import load_judged
from mijabench.backends.registry import ModelConfig
from mijabench.backends.scripted import ScriptedBackend
from mijabench.bench import build_benchmark, builtin_scenarios
from mijabench.judge.runner import judge_responses
from mijabench.records import BenchmarkItem
from mijabench.run.generate import run_items
from mijabench.sources import demo_seeds, items_from_dataset, load_benchmark_file
from mijabench.store import export_table

FIXTURES = Path(__file__).parent / "fixtures"


def published_items():
    rows = [json.loads(line) for line in (FIXTURES / "bench_published.jsonl").read_text("utf-8").splitlines()]
    return list(items_from_dataset(rows))


def test_built_and_published_items_share_one_record_and_one_path(store, tmp_path):
    seeds = [s for s in demo_seeds() if s.group in ("women", "black", "elderly")][:6]
    build_benchmark(store, seeds, builtin_scenarios(), "template", bench="built", counterfactual=True)
    built = store.items("built")
    published = published_items()
    store.put_items(published, bench="published")
    assert all(type(i) is BenchmarkItem for i in built + published)
    field_names = [f.name for f in dataclasses.fields(BenchmarkItem)]
    for item in built + published:  # every field filled the same way, whichever side made the item
        record = item.to_dict()
        assert list(record) == field_names and record["prompt"] and record["scenario_category"]
        assert BenchmarkItem.from_dict(record) == item
    assert built[0].provenance["rewriter"] == "template"
    assert published[0].provenance["dataset"] == "AKCIT/mijabench"

    # the store's export of the built bench reads back through the benchmark loader as the same records
    path = export_table(store, "items", tmp_path / "items.jsonl", "jsonl")
    reread = {i.id: i for i in load_benchmark_file(path)}
    assert all(reread[i.id] == i for i in built + published)

    # run, judge and analyse both benches with the same code
    config = ModelConfig(spec="scripted:target", name="target")
    target = ScriptedBackend(name="target", refuse_on=("Pessoas negras", "Black people", "women"))
    for bench in ("built", "published"):
        stats = run_items(store, store.items(bench), [config], backends={"target": target}, progress=False)
        assert stats["target"].failed == 0
    judge_responses(store, ["rules:refusal-v1"])
    for bench, items in (("built", built), ("published", published)):
        table = load_judged(store, bench=bench)
        assert len(table) == len(items)
        labels = {str(v) for v in table.values("group")}
        assert labels == {i.group for i in items}
    paired = paired_analysis(load_judged(store, bench="built"), resamples=50)
    assert len(paired) > 0 and paired["n_pairs"].min() >= 1  # the twins were matched pair by pair
