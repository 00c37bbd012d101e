"""`mijabench seeds build | show` end to end: demo offline, local files (fixtures and the shared ToxiGen
sample), hub schemas from disk, and the store."""

import json
from collections import Counter
from pathlib import Path

import pytest

from mijabench.store import Store
from mijabench.taxonomy import load_taxonomy
from test_cli_errors import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_demo_build_offline_covers_all_groups_and_stores(tmp_path):
    out = tmp_path / "demo.jsonl"
    result = run_cli("seeds", "build", "--source", "demo", "--per-group", "4", "--out", str(out), "--store",
                     "--workspace", str(tmp_path / "ws"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = _read(out)
    counts = Counter((r["language"], r["group"]) for r in rows)
    tax = load_taxonomy()
    assert set(counts) == {(lang, g.id) for lang in ("en", "pt") for g in tax.groups_for(lang)}
    assert set(counts.values()) == {4} and len({r["group"] for r in rows}) == 16
    assert result.stderr.strip() == ""  # no shortfall: every demo group has at least 4
    with Store(tmp_path / "ws", create=False) as store:
        assert sorted(s.id for s in store.seeds()) == sorted(r["id"] for r in rows)
        runs = store.runs("seeds")
        assert len(runs) == 1 and runs[0]["config"]["source"] == "demo" and runs[0]["config"]["count"] == 88


def test_demo_language_and_shortfall_warning(tmp_path):
    out = tmp_path / "pt.jsonl"
    result = run_cli("seeds", "build", "--source", "demo", "--language", "pt", "--per-group", "6",
                     "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = _read(out)
    assert {r["language"] for r in rows} == {"pt"} and len({r["group"] for r in rows}) == 9
    assert result.stderr.count("warning:") == 9 and "fewer than the 6 asked for" in result.stderr


def test_local_csv_with_mapping_and_filters(tmp_path):
    out = tmp_path / "mixed.jsonl"
    result = run_cli("seeds", "build", "--source", str(FIXTURES / "seeds_mixed.csv"),
                     "--text-col", "statement", "--group-col", "target", "--language-col", "lang",
                     "--where", "label == 1", "--language", "pt", "--per-group", "1", "--out", str(out),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["group"] for r in _read(out)) == ["black", "elderly", "women"]
    said = " ".join(result.stdout.split())  # the console wraps long lines (a long tmp path moves the break)
    assert "1 in another language" not in said and "2 in another language" in said


def test_hub_schema_from_disk_through_the_cli(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _read(FIXTURES / "hub_layout_seeds_en.jsonl")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "toxigen"))
    out = tmp_path / "tg.jsonl"
    result = run_cli("seeds", "build", "--source", "toxigen", "--from-disk", str(tmp_path / "toxigen"),
                     "--per-group", "1", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    got = _read(out)
    assert sorted(r["group"] for r in got) == ["asian", "black", "mental_dis", "women"]
    assert all(r["source"] == "toxigen/toxigen-data" for r in got)
    # the other 9 English groups are expected from ToxiGen and reported as missing
    assert "en/latino: no seeds at all" in result.stderr


def test_show_prints_a_content_warning(tmp_path):
    out = tmp_path / "demo.jsonl"
    assert run_cli("seeds", "build", "--source", "demo", "--per-group", "2", "--out", str(out),
                   cwd=tmp_path).returncode == 0
    shown = run_cli("seeds", "show", str(out), "--limit", "1", cwd=tmp_path)
    assert shown.returncode == 0 and "Content warning" in shown.stderr and "elderly" in shown.stdout


# -- the shared ToxiGen sample (skipped when absent) --------------------------------------------------------
def _toxigen_counts(toxigen_dir: Path) -> Counter:
    tax = load_taxonomy()
    rows = _read(toxigen_dir / "annotated.jsonl")
    return Counter(tax.resolve_group(r["group"]) for r in rows if r["toxicity_human"] >= 4)


def test_toxigen_annotated_gives_a_balanced_sample(tmp_path, toxigen_dir):
    available = _toxigen_counts(toxigen_dir)
    per_group = 20
    assert len(available) == 13
    out = tmp_path / "toxigen.jsonl"
    args = ["seeds", "build", "--source", str(toxigen_dir / "annotated.jsonl"), "--language", "en",
            "--where", "toxicity_human >= 4", "--per-group", str(per_group), "--out", str(out), "--seed", "5"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = _read(out)
    got = Counter(r["group"] for r in rows)
    assert got == {g: min(n, per_group) for g, n in available.items()}
    assert all(r["meta"]["toxicity_human"] >= 4 for r in rows)
    short = sorted(g for g, n in available.items() if n < per_group)
    assert short == ["mental_dis"]  # what the shared sample holds: 16 clearly hateful mental_dis rows
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: en/mental_dis: only {available['mental_dis']} unique seed(s), fewer than "
                        f"the {per_group} asked for; took all {available['mental_dis']}"]
    first = out.read_bytes()
    assert run_cli(*args, cwd=tmp_path).returncode == 0 and out.read_bytes() == first  # seeded: identical


def test_toxigen_exactly_n_for_every_group_when_all_have_enough(tmp_path, toxigen_dir):
    per_group = min(_toxigen_counts(toxigen_dir).values())  # 16 in the shared sample
    out = tmp_path / "toxigen.jsonl"
    result = run_cli("seeds", "build", "--source", str(toxigen_dir / "annotated.jsonl"), "--language", "en",
                     "--where", "toxicity_human >= 4", "--per-group", str(per_group), "--out", str(out),
                     cwd=tmp_path)
    assert result.returncode == 0 and "warning" not in result.stderr
    got = Counter(r["group"] for r in _read(out))
    assert len(got) == 13 and set(got.values()) == {per_group}
