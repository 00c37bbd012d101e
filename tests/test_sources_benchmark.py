"""Benchmark files: the published layout and our own items export, in every format, with row errors."""

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mijabench.errors import InputError
from mijabench.records import BenchmarkItem
from mijabench.sources import load_benchmark_file
from mijabench.store import export_table

FIXTURES = Path(__file__).parent / "fixtures"
PUBLISHED = FIXTURES / "bench_published.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_published_layout_in_jsonl_csv_and_parquet(tmp_path):
    rows = _rows(PUBLISHED)
    with open(tmp_path / "b.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    ref = load_benchmark_file(PUBLISHED)
    assert len(ref) == 3 and ref[1].group == "elderly" and ref[1].strategy == "chain_of_thought"
    assert ref[0].scenario_text.startswith("A museum curator") and ref[0].prompt.startswith("You are")
    for name in ("b.csv", "b.parquet"):
        assert [i.id for i in load_benchmark_file(tmp_path / name)] == [i.id for i in ref]


def test_column_mapping_and_fixed_language(tmp_path):
    rows = [{"statement": r["text"], "target": r["group"], "scenario_category": r["scenario_category"],
             "scenario": r["scenario"], "jb_strategy": r["jb_strategy"], "jb_prompt": r["jb_prompt"]}
            for r in _rows(PUBLISHED) if r["language"] == "en"]
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    items = load_benchmark_file(path, {"seed_text": "statement", "group": "target"}, language="en")
    ref = [i for i in load_benchmark_file(PUBLISHED) if i.language == "en"]
    assert [i.id for i in items] == [i.id for i in ref]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_store_export_round_trips(store, tmp_path, fmt):
    items = load_benchmark_file(PUBLISHED)
    twin = BenchmarkItem(**{**items[0].to_dict(), "id": "", "group": "black", "pair_id": "pair-1"})
    store.put_items([*items, twin], bench="b")
    out = export_table(store, "items", tmp_path / f"items.{fmt}", fmt)
    assert load_benchmark_file(out) == store.items("b")


def test_records_layout_with_group_column(tmp_path):
    items = load_benchmark_file(PUBLISHED)
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in items), encoding="utf-8")
    assert load_benchmark_file(path) == items


@pytest.mark.parametrize("change, row, field, message", [
    ({"jb_strategy": "flattery"}, 2, "jb_strategy", "unknown strategy 'flattery'"),
    ({"scenario_category": "cooking"}, 2, "scenario_category", "unknown scenario category 'cooking'"),
    ({"jb_prompt": " "}, 2, "jb_prompt", "empty prompt"),
    ({"group": "martians"}, 2, "group", "unknown group 'martians'"),
    ({"language": "de"}, 2, "language", "unknown language 'de'"),
])
def test_bad_benchmark_rows(tmp_path, change, row, field, message):
    rows = _rows(PUBLISHED)
    rows[1].update(change)
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_benchmark_file(path)
    assert message in str(err.value) and (err.value.row, err.value.field) == (row, field)


def test_not_a_benchmark_and_bad_provenance(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"text": "Women are bad at maps.", "group": "women"}\n')
    with pytest.raises(InputError, match="not a benchmark"):
        load_benchmark_file(seeds)
    item = load_benchmark_file(PUBLISHED)[0].to_dict() | {"provenance": "[1, 2]"}
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(item) + "\n")
    with pytest.raises(InputError, match="provenance is not a JSON object"):
        load_benchmark_file(path)
