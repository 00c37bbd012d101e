"""The column-wise reading of a long Parquet corpus (sources/corpuscolumns.py) against the row reader it
stands in for: the same store, row for row and in the same order, and the same one-line error on bad input.
Fixture content is mild placeholder text."""

from __future__ import annotations

import csv
import io
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mijabench.errors import InputError
from mijabench.sources import corpuscolumns
from mijabench.sources.importer import import_corpus
from mijabench.store import Store
from test_import import EN, PT, long_rows, wide_rows


def tricky_rows() -> list[dict]:
    """The long fixture plus what the column reader must treat as the row reader does: repeats, gaps,
    blanks, padded cells, published names, extras of other types."""
    rows = [{**r, "n": k, "weight": 0.5 if k % 2 else math.nan} for k, r in enumerate(long_rows())]
    first = rows[0]
    rows += [
        {**first, "jb_response": first["jb_response"], "jb_cls_gpt": "harmful"},  # a repeat: adds nothing
        {**first, "jb_prompt": " " + first["jb_prompt"] + "\n", "n": 99, "model": " mistral ",
         "jb_response": None, "jb_cls_gpt": "safe"},  # other cells, same item; no reply yet
        {**first, "model": "mistral", "jb_response": "", "jb_cls_gpt": "  ", "jb_cls_llama_guard": None},
        {**first, "model": "phi", "jb_response": "Sure.", "jb_cls_gpt": PT % ("não", "sim", "x", "perigosa"),
         "jb_cls_llama_guard": "SAFE"},
        {**rows[3], "model": "phi", "jb_response": "Okay.",
         "jb_cls_gpt": EN % ("no", "yes", "y", "dangerous"), "jb_cls_llama_guard": "no idea at all"},
    ]
    return rows


def table_rows(store: Store) -> dict[str, list[tuple]]:
    out = {}
    for table in ("items", "bench_items", "responses", "verdicts", "models", "runs"):
        cur = store.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")
        names = [d[0] for d in cur.description]
        out[table] = [tuple(v for n, v in zip(names, row, strict=True) if n != "created_at") for row in cur]
    return out


def by_rows(monkeypatch):
    monkeypatch.setattr(corpuscolumns, "read_columns", lambda table, reader: False)


def write(rows: list[dict], path):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=4)  # several chunks per column
    return path


def both_readers(path, tmp_path, monkeypatch, twice: bool = False):
    """(column reader's result, its store's rows, row reader's result, whether each import went by
    columns); the two stores must be the same row for row. ``twice``: the column import runs again into its
    full store and must add and change nothing."""
    used = []
    real = corpuscolumns.read_columns
    monkeypatch.setattr(corpuscolumns, "read_columns", lambda t, r: used.append(real(t, r)) or used[-1])
    with Store(tmp_path / "columns") as store:
        fast = import_corpus(store, path, judge_prefix="paper:")
        fast_rows = table_rows(store)
        if twice:
            again = import_corpus(store, path, judge_prefix="paper:")  # into a full store: ids looked up
            assert not any(again.added.values()) and table_rows(store) == fast_rows
    by_rows(monkeypatch)
    with Store(tmp_path / "rows") as store:
        slow = import_corpus(store, path, judge_prefix="paper:")
        assert table_rows(store) == fast_rows
    assert (fast.layout, fast.read, fast.added) == (slow.layout, slow.read, slow.added)
    assert fast.notes == slow.notes
    return fast, fast_rows, used


def test_column_reader_writes_what_the_row_reader_writes(tmp_path, monkeypatch):
    path = write(tricky_rows(), tmp_path / "corpus.parquet")
    fast, _, used = both_readers(path, tmp_path, monkeypatch, twice=True)
    assert used == [True, True]
    assert fast.read == {"rows": 10, "items": 3, "responses": 8, "verdicts": 14}
    assert any("without a response" in n for n in fast.notes) and any("paper:llama_guard" in n
                                                                      for n in fast.notes)


@pytest.mark.parametrize("change", [
    lambda r: r[4].update(group="martians"),
    lambda r: (r[1].update(model="  "), r[4].update(group="martians")),  # the first bad row is named
    lambda r: r.append({**r[0], "jb_response": "Another reply."}),
    lambda r: r[2].update(jb_strategy="persuasion"),
    lambda r: [row.update(jb_cls_gpt=7) for row in r],  # not text: left to the row reader
])
def test_bad_input_is_named_as_the_row_reader_names_it(tmp_path, monkeypatch, change):
    rows = tricky_rows()
    change(rows)
    path = write(rows, tmp_path / "bad.parquet")
    with Store(tmp_path / "a") as store:
        with pytest.raises(InputError) as fast:
            import_corpus(store, path)
        assert store.counts()["responses"] == 0 and store.counts()["runs"] == 0
    by_rows(monkeypatch)
    with Store(tmp_path / "b") as store, pytest.raises(InputError) as slow:
        import_corpus(store, path)
    assert str(fast.value) == str(slow.value) and "bad.parquet" in str(fast.value)


def test_column_reader_masks_secrets_as_the_store_always_does(tmp_path, monkeypatch):
    secret = "sk-column-reader-0123456789"
    monkeypatch.setenv("MIJA_TEST_API_KEY", secret)
    rows = tricky_rows()
    rows[2]["jb_response"] = f"my key is {secret}"
    rows[1]["jb_cls_gpt"] = EN % ("no", "yes", f"saw {secret}", "dangerous")
    with Store(tmp_path / "ws") as store:
        assert import_corpus(store, write(rows, tmp_path / "corpus.parquet")).read["verdicts"] == 14
        stored = repr(table_rows(store))
    assert secret not in stored and "my key is ***" in stored and "saw ***" in stored


def tricky_wide_rows() -> list[dict]:
    """The published wide fixture plus: a third model that one judge never judged (no column), a row that
    repeats an earlier prompt with the same replies, blank and missing judge cells, an extra column."""
    rows = [{**r, "jb_response_phi": f"Reply {k}.", "jb_cls_gpt_phi": "safe" if k % 2 else "unsafe",
             "batch": f"b{k % 2}"} for k, r in enumerate(wide_rows())]
    rows.append({**rows[0]})  # the same prompt again: its replies add nothing
    rows.append({**rows[1], "jb_prompt": "Another prompt...", "jb_response_qwen_7b": None,
                 "jb_cls_gpt_qwen_7b": "  ", "jb_cls_llama_guard_gemma": None, "jb_response_phi": "Sure."})
    return rows


def test_a_wide_table_read_by_columns_writes_what_the_row_reader_writes(tmp_path, monkeypatch):
    """The published wide layout goes through the column reader as its long table of (row, model) cells:
    the same store row for row, in the same order, with the same summary and notes."""
    path = write(tricky_wide_rows(), tmp_path / "wide.parquet")
    fast, fast_rows, used = both_readers(path, tmp_path, monkeypatch)
    assert used == [True]
    assert fast.layout == "wide" and fast.read["rows"] == 5 and fast.read["responses"] == 10
    assert all('"batch"' in row[-1] for row in fast_rows["items"])  # the extra column in each provenance


def write_jsonl(rows: list[dict], path, blank_line: bool = False):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if blank_line:
        lines.insert(2, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def jsonl_rows() -> list[dict]:
    return [{k: v for k, v in r.items() if k != "weight"} for r in tricky_rows()]  # a NaN is not JSON


def test_a_jsonl_corpus_is_read_by_columns_to_the_same_store(tmp_path, monkeypatch):
    path = write_jsonl(jsonl_rows(), tmp_path / "corpus.jsonl")
    fast, _, used = both_readers(path, tmp_path, monkeypatch, twice=True)
    assert used == [True, True]
    assert fast.read == {"rows": 10, "items": 3, "responses": 8, "verdicts": 14}


@pytest.mark.parametrize("change", [
    "blank line",  # line numbers would no longer be row positions
    lambda r: r[3].update(weight=0.5),  # a float among ints: Arrow reads the whole column as floats
    lambda r: r[3].update(n=None),  # an extra key set to null ...
    lambda r: r[3].pop("n"),  # ... or missing: Arrow cannot tell them apart, the provenance can
    lambda r: r[5].update(batch="b7"),  # a key the first line lacks
    lambda r: [row.update(n=f"2024-01-0{k % 9 + 1}") for k, row in enumerate(r)],  # read as dates
    lambda r: r[1].update(n={"nested": 1}),  # objects get every key of every row
])
def test_a_jsonl_file_whose_table_could_differ_is_read_line_by_line(tmp_path, monkeypatch, change):
    rows = jsonl_rows()
    if callable(change):
        change(rows)
    path = write_jsonl(rows, tmp_path / "corpus.jsonl", blank_line=change == "blank line")
    fast, _, used = both_readers(path, tmp_path, monkeypatch)
    assert used == [] and fast.read["responses"] == 8


def write_csv(rows: list[dict], path, delimiter: str = ",", after_first: str = ""):
    """Rows as CSV (None as an empty cell); ``after_first``: raw text inserted after the first record."""
    out = io.StringIO(newline="")
    names = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(out, names, delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    text = out.getvalue()
    if after_first:
        head, first, rest = text.split("\r\n", 2)
        text = f"{head}\r\n{first}\r\n{after_first}{rest}"
    path.write_bytes(text.encode("utf-8"))
    return path


def csv_rows() -> list[dict]:
    """The tricky rows with cells CSV must quote: delimiters, doubled quotes, line breaks, padding."""
    rows = tricky_rows()
    rows[1]["jb_response"] = 'She said "no, never",\r\nthen left.\n'
    rows[2]["jb_response"] = "\ttabbed\t"
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_csv_corpus_is_read_by_columns_to_the_same_store(tmp_path, monkeypatch, suffix):
    path = write_csv(csv_rows(), tmp_path / f"corpus{suffix}", "\t" if suffix == ".tsv" else ",")
    fast, _, used = both_readers(path, tmp_path, monkeypatch, twice=True)
    assert used == [True, True]
    assert fast.read["rows"] == 10 and fast.read["responses"] == 8


@pytest.mark.parametrize("blank", ["", " ", "\u3000"])
def test_a_csv_file_with_a_blank_record_is_read_record_by_record(tmp_path, monkeypatch, blank):
    """A record of blank cells (or an empty line) is skipped by the row reader and counted: the records
    after it would get other numbers by position."""
    rows = csv_rows()
    width = len(dict.fromkeys(k for r in rows for k in r))
    line = ",".join([blank] * width) if blank else ""
    path = write_csv(rows, tmp_path / "corpus.csv", after_first=line + "\r\n")
    fast, _, used = both_readers(path, tmp_path, monkeypatch)
    assert used == [] and fast.read["rows"] == 10


def test_a_broken_csv_record_is_named_by_the_row_reader(tmp_path, monkeypatch):
    path = write_csv(csv_rows(), tmp_path / "bad.csv", after_first='"unclosed,quote\r\n')
    with Store(tmp_path / "a") as store, pytest.raises(InputError) as fast:
        import_corpus(store, path)
    by_rows(monkeypatch)
    with Store(tmp_path / "b") as store, pytest.raises(InputError) as slow:
        import_corpus(store, path)
    assert str(fast.value) == str(slow.value) and "bad.csv" in str(fast.value)


def test_a_hub_dataset_is_read_by_columns_to_the_same_store(tmp_path, monkeypatch):
    """A corpus from the hub (here a saved copy, as `--from-disk` reads it) is a `datasets.Dataset`, whose
    Arrow table the column reader takes as it takes a Parquet file's."""
    datasets = pytest.importorskip("datasets")
    rows = tricky_rows()
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "copy"))
    used = []
    real = corpuscolumns.read_columns
    monkeypatch.setattr(corpuscolumns, "read_columns", lambda t, r: used.append(real(t, r)) or used[-1])
    results, stores = [], []
    for name in ("columns", "rows"):
        if name == "rows":
            by_rows(monkeypatch)
        with Store(tmp_path / name) as store:
            results.append(import_corpus(store, "AKCIT/mijabench_align", hub=True,
                                         from_disk=tmp_path / "copy"))
            stores.append(table_rows(store))
    assert used == [True] and stores[0] == stores[1]
    assert results[0].read == results[1].read == {"rows": 10, "items": 3, "responses": 8, "verdicts": 14}


def test_a_dataset_with_a_feature_that_is_not_a_plain_value_is_read_row_by_row():
    """A decoded feature (a list here; an image or a sound alike) reads otherwise row by row than in Arrow:
    only a dataset of plain values offers its table."""
    datasets = pytest.importorskip("datasets")
    from mijabench.sources.tables import rows_of

    plain = datasets.Dataset.from_list([{"a": "x", "n": 1}, {"a": "y", "n": 2}])
    listed = datasets.Dataset.from_list([{"a": "x", "tags": ["p", "q"]}, {"a": "y", "tags": []}])
    table = rows_of(plain, "plain").arrow()
    assert table.column_names == ["a", "n"] and table.num_rows == 2
    assert rows_of(listed, "listed").arrow is None
    assert rows_of([{"a": "x"}], "a list").arrow is None


def test_texts_are_python_strings_only_for_the_slice_asked():
    """A corpus's replies stay in their Arrow column until the store writes a batch of them: a slice, any
    step, iteration across chunks, and missing values read as the column's own Python values."""
    values = ["a", None, "ccc", "", "e\u00e9", "f", "g"]
    for column in (pa.array(values), pa.chunked_array([values[:3], values[3:5], [], values[5:]])):
        texts = corpuscolumns.Texts(column)
        assert len(texts) == 7 and list(texts) == values
        assert texts[1:4] == values[1:4] and texts[5:] == values[5:] and texts[:0] == []
        assert texts[::2] == values[::2] and texts[2:100] == values[2:] and texts[-3:] == values[-3:]
