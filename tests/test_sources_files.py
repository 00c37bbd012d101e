"""Local seed files: formats, column mapping, filters, label aliases and the errors bad rows raise."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mijabench.errors import InputError
from mijabench.sources import SeedColumns, load_seed_file, parse_filter, write_seeds_jsonl
from mijabench.sources.seedmap import LoadStats
from mijabench.sources.tables import open_table

FIXTURES = Path(__file__).parent / "fixtures"
EN = SeedColumns(language="en")
MIXED = SeedColumns(text="statement", group="target", language_column="lang")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_maps_source_labels_through_the_taxonomy():
    seeds = load_seed_file(FIXTURES / "seeds_en.jsonl", EN)
    groups = {s.group for s in seeds}
    # ToxiGen / statements.jsonl spellings all land on canonical ids
    assert groups == {"asian", "black", "mental_dis", "lgbtq", "immigrants", "women", "physical_dis"}
    assert all(s.language == "en" and s.source == "file:seeds_en.jsonl" for s in seeds)
    first = seeds[0]
    assert first.meta["row"] == 1 and first.meta["toxicity_human"] == 4.3 and "text" not in first.meta


def test_numeric_filter_keeps_only_matching_rows():
    stats = LoadStats()
    seeds = load_seed_file(FIXTURES / "seeds_en.jsonl", EN, ["toxicity_human >= 4"], stats=stats)
    assert len(seeds) == 15 and stats.read == 19 and stats.filtered_out == 4
    assert all(s.meta["toxicity_human"] >= 4 for s in seeds)
    strict = load_seed_file(FIXTURES / "seeds_en.jsonl", EN, ["toxicity_human > 4.5"])
    assert {s.meta["toxicity_human"] for s in strict} == {4.7, 5.0}


def test_csv_with_column_mapping_and_language_column():
    seeds = load_seed_file(FIXTURES / "seeds_mixed.csv", MIXED, ["label == 1"])
    assert [(s.language, s.group) for s in seeds] == [
        ("en", "women"), ("en", "elderly"), ("pt", "women"), ("pt", "elderly"), ("pt", "black")]
    only_pt = load_seed_file(FIXTURES / "seeds_mixed.csv",
                             SeedColumns("statement", "target", "lang", language="pt"))
    assert {s.language for s in only_pt} == {"pt"} and len(only_pt) == 4


def test_parquet_and_tsv_give_the_same_seeds_as_jsonl(tmp_path):
    rows = _rows(FIXTURES / "seeds_en.jsonl")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    header = list(rows[0])
    tsv = "\n".join(["\t".join(header)] + ["\t".join(str(r[c]) for c in header) for r in rows])
    (tmp_path / "s.tsv").write_text(tsv + "\n", encoding="utf-8")
    ref = load_seed_file(FIXTURES / "seeds_en.jsonl", EN, ["toxicity_human >= 4"])
    for name in ("s.parquet", "s.tsv"):
        got = load_seed_file(tmp_path / name, EN, ["toxicity_human >= 4"])
        assert [s.id for s in got] == [s.id for s in ref]


def test_written_seeds_read_back_identically(tmp_path):
    seeds = load_seed_file(FIXTURES / "seeds_en.jsonl", EN)
    out = write_seeds_jsonl(seeds, tmp_path / "sub" / "out.jsonl")
    again = load_seed_file(out)  # has a language column now
    assert [s.id for s in again] == [s.id for s in seeds]
    assert again[0].meta["toxicity_human"] == seeds[0].meta["toxicity_human"]
    assert not [p for p in out.parent.iterdir() if p.name != "out.jsonl"]  # no temp file left


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")

    def broken():
        yield load_seed_file(FIXTURES / "seeds_en.jsonl", EN)[0]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_seeds_jsonl(broken(), out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize("expr, row, expected", [
    ("toxicity_human >= 4", {"toxicity_human": 4}, True),
    ("toxicity_human >= 4", {"toxicity_human": "3.99"}, False),
    ("prompt_label == 1", {"prompt_label": True}, True),
    ("prompt_label = 1", {"prompt_label": 0}, False),
    ("x != 2", {"x": 2.0}, False),
    ("x < -1.5e0", {"x": -2}, True),
    ("label == hate", {"label": "hate"}, True),
    ("label != 'hate speech'", {"label": "hate speech"}, False),
    ("score > 1", {"score": float("nan")}, False),
])
def test_filters(expr, row, expected):
    assert parse_filter(expr).matches(row) is expected


@pytest.mark.parametrize("expr", ["", "toxicity_human", ">= 4", "x >= ", "x >= hate", "x == a b",
                                  "__import__('os') == 1", "x ~ 3", "x >= 4; rm -rf /"])
def test_bad_filter_expressions_are_input_errors(expr):
    with pytest.raises(InputError, match="bad filter expression"):
        parse_filter(expr)


def test_non_numeric_value_under_numeric_filter_names_row_and_field(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "Women are bad at maps.", "group": "women", "score": 5}\n'
                    '{"text": "Women are bad at maps too.", "group": "women", "score": "high"}\n')
    with pytest.raises(InputError) as err:
        load_seed_file(path, EN, ["score >= 4"])
    assert (err.value.row, err.value.field) == (2, "score") and "not a number" in str(err.value)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


GOOD = '{"text": "Women are bad at maps.", "group": "women"}\n'


@pytest.mark.parametrize("name, content, columns, where, row, field, message", [
    ("a.jsonl", '{"group": "women"}\n', EN, [], None, "text", "missing column 'text'"),
    ("a.jsonl", GOOD + '{"text": "Martians are odd.", "group": "martians"}\n', EN, [], 2, "group",
     "unknown group 'martians'"),
    ("a.jsonl", GOOD + '{"text": "   ", "group": "women"}\n', EN, [], 2, "text", "empty text"),
    ("a.jsonl", GOOD + '{"text": 42, "group": "women"}\n', EN, [], 2, "text", "not a string"),
    ("a.jsonl", '{"text": "x y", "group": "women", "language": "fr"}\n', SeedColumns(), [], 1,
     "language", "unknown language 'fr'"),
    ("a.jsonl", GOOD + "\n" + '{"text": "x", "group": \n', EN, [], 3, None, "invalid JSON"),
    ("a.jsonl", GOOD + "[1, 2]\n", EN, [], 2, None, "expected a JSON object"),
    ("a.jsonl", GOOD.encode() + b'{"text": "caf\xe9", "group": "women"}\n', EN, [], 2, None, "not UTF-8"),
    ("a.jsonl", "\n\n", EN, [], None, None, "is empty"),
    ("a.jsonl", GOOD, SeedColumns(), [], None, None, "no language"),
    ("a.jsonl", GOOD, EN, ["score >= 4"], None, "score", "missing column 'score'"),
    ("a.csv", "text,group\n", EN, [], None, None, "is empty"),
    ("a.csv", "text,group\nfine text,women\nshort\n", EN, [], 2, None, "expected 2 fields"),
    ("a.csv", b"text,group\nfine,women\nbad \xff\xfe,women\n", EN, [], 2, None, "not UTF-8"),
    ("a.csv", "words,group\nfine text,women\n", EN, [], None, "text", "missing column 'text'"),
    ("a.parquet", b"PAR1 this is not parquet", EN, [], None, None, "not a readable Parquet file"),
    ("a.xlsx", "whatever", EN, [], None, None, "unknown file type '.xlsx'"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, name, content, columns, where, row, field, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(InputError) as err:
        load_seed_file(path, columns, where)
    assert message in str(err.value)
    assert err.value.file == str(path) and err.value.row == row and err.value.field == field


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_seed_file(tmp_path / "nope.jsonl", EN)


def test_language_names_and_regions_are_accepted(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "group": "women", "language": lang}) + "\n"
                            for i, lang in enumerate(["EN", "en-US", "English", "pt_BR", "Português"])))
    assert [s.language for s in load_seed_file(path)] == ["en", "en", "en", "pt", "pt"]


def test_parquet_columns_come_from_the_footer_without_decoding_a_batch(tmp_path, monkeypatch):
    path = tmp_path / "s.parquet"
    table = pa.Table.from_pylist([{"text": "Women are bad at maps.", "group": "women", "score": 4.5}])
    pq.write_table(table, path)
    pq.write_table(table.slice(0, 0), tmp_path / "empty.parquet")
    decoded = []
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: decoded.append(1) or iter(()))
    assert open_table(path).columns == ["text", "group", "score"] and not decoded
    with pytest.raises(InputError, match="is empty") as err:
        open_table(tmp_path / "empty.parquet")
    assert err.value.file == str(tmp_path / "empty.parquet") and not decoded


def test_damaged_parquet_page_names_the_row(tmp_path):
    rows = [{"text": f"Women are bad at maps {i}.", "group": "women"} for i in range(20000)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=5000, compression="snappy")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2000] = b"\x55" * 2000
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="unreadable Parquet data") as err:
        load_seed_file(path, EN)
    assert err.value.row is not None and err.value.row > 1
