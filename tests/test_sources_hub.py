"""Hub loaders, run through the same code on small local datasets of the hub schemas (the hub is not
reachable from the test machine)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mijabench.errors import InputError, MijaError
from mijabench.sources import hub
from mijabench.sources.hub import TOXIGEN, TOXSYN

datasets = pytest.importorskip("datasets")
FIXTURES = Path(__file__).parent / "fixtures"


def _dataset(name: str):
    rows = [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]
    return datasets.Dataset.from_list(rows)


def test_toxigen_schema_keeps_hateful_rows_only():
    seeds = hub.seeds_from_dataset(_dataset("hub_layout_seeds_en.jsonl"), TOXIGEN)
    assert len(seeds) == 5  # prompt_label == 1
    assert {s.group for s in seeds} == {"mental_dis", "women", "black", "asian"}
    assert all(s.language == "en" and s.source == "toxigen/toxigen-data" for s in seeds)
    assert seeds[0].meta["generation_method"] == "top-k" and "generation" not in seeds[0].meta


def test_toxsyn_schema_maps_portuguese_labels():
    seeds = hub.seeds_from_dataset(_dataset("toxsyn_hub.jsonl"), TOXSYN)
    assert len(seeds) == 9 and all(s.language == "pt" for s in seeds)
    assert {s.group for s in seeds} == {"black", "women", "elderly", "immigrants", "disability", "lgbtq",
                                        "native_american", "muslim", "jewish"}


def test_extra_filters_and_language_mismatch():
    seeds = hub.seeds_from_dataset(_dataset("hub_layout_seeds_en.jsonl"), TOXIGEN, where=["group == women"])
    assert {s.group for s in seeds} == {"women"} and len(seeds) == 2
    with pytest.raises(MijaError, match="cannot give --language pt"):
        hub.seeds_from_dataset(_dataset("hub_layout_seeds_en.jsonl"), TOXIGEN, language="pt")


def test_plain_iterables_of_dicts_work_too():
    rows = [{"text": "Idosos são lentos.", "group": "idosos", "is_toxic": 1}]
    assert hub.seeds_from_dataset(iter(rows), TOXSYN)[0].group == "elderly"


def test_schema_errors_name_the_dataset_row_and_field():
    data = datasets.Dataset.from_list([{"generation": "Women are bad at maps.", "group": "women",
                                        "prompt_label": 1},
                                       {"generation": "Martians are odd.", "group": "martians",
                                        "prompt_label": 1}])
    with pytest.raises(InputError) as err:
        hub.seeds_from_dataset(data, TOXIGEN)
    assert "toxigen/toxigen-data[train], row 2, field 'group'" in str(err.value)
    no_label = datasets.Dataset.from_list([{"generation": "x", "group": "women"}])
    with pytest.raises(InputError, match="missing column 'prompt_label'"):
        hub.seeds_from_dataset(no_label, TOXIGEN)


def test_open_dataset_from_disk_and_named_loader(tmp_path):
    layout = _dataset("hub_layout_seeds_en.jsonl")
    layout.save_to_disk(str(tmp_path / "flat"))
    datasets.DatasetDict({"train": layout}).save_to_disk(str(tmp_path / "dict"))
    for folder in ("flat", "dict"):
        seeds = hub.load_hub_seeds("toxigen", from_disk=tmp_path / folder)
        assert len(seeds) == 5
    with pytest.raises(MijaError, match="no split 'test'"):
        hub.open_dataset("x", split="test", from_disk=tmp_path / "dict")
    with pytest.raises(MijaError, match="not a dataset folder"):
        hub.open_dataset("x", from_disk=tmp_path / "nothing-here")


def test_unreachable_hub_is_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'toxigen/toxigen-data' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MijaError) as err:
        hub.load_hub_seeds("toxigen")
    message = str(err.value)
    assert message.startswith("could not reach the Hugging Face hub for 'toxigen/toxigen-data'")
    assert "\n" not in message and "--source FILE" in message


def test_published_benchmark_and_alignment_corpus_become_items():
    items = list(hub.items_from_dataset(_dataset("bench_published.jsonl")))
    assert [(i.language, i.group, i.strategy, i.scenario_category) for i in items] == [
        ("en", "women", "persona_assignment", "history"),
        ("pt", "elderly", "chain_of_thought", "futuristic_technologies"),
        ("en", "asian", "representation_shifting", "abstract_surreal_spaces")]
    assert items[0].provenance["dataset_source"] == "fixture"
    assert items[0].provenance["dataset"] == "AKCIT/mijabench"
    aligned = list(hub.items_from_dataset(_dataset("align_corpus.jsonl"), hub.ALIGN_REPO))
    assert [i.id for i in aligned] == [i.id for i in items]  # same content, same ids
    assert aligned[1].provenance["response"] and aligned[1].provenance["label"] == "safe"


def test_load_hub_benchmark_from_disk(tmp_path):
    _dataset("bench_published.jsonl").save_to_disk(str(tmp_path / "bench"))
    assert len(hub.load_hub_benchmark(from_disk=tmp_path / "bench")) == 3


def test_importing_sources_does_not_import_datasets():
    code = "import sys, mijabench.sources, mijabench.cli.main; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
