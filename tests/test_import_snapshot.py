"""An import into an empty store leaves the judged table's snapshot beside it, made from the corpus's own
columns (sources/importsnapshot.py): the table is the one a load from SQLite gives, row for row and meta
for meta, whether it was made in a forked child or here, and the first report after the import reads it.
No snapshot where the table would not be the import's alone or the report would refuse the vote."""

from __future__ import annotations

import os
import signal

import pytest

from mijabench.analysis import snapshot, table
from mijabench.analysis.table import DEFAULT_EMPTY_RULE, load_judged
from mijabench.sources import digests, importsnapshot
from mijabench.sources.importer import import_corpus
from mijabench.store import Store
from test_import_columns import tricky_rows, write
from test_judged_snapshot import same

LABELS = ("safe", "harmful", None, "unsure about this one", "HARMFUL", "  ")


def _rows(judges: int) -> list[dict]:
    """The tricky long fixture (repeats, gaps, blank replies, unparsed outputs) with 1, 2 or 3 judges."""
    rows = tricky_rows()
    for k, row in enumerate(rows):
        if judges == 1:
            row.pop("jb_cls_llama_guard")
        if judges == 3:
            row["jb_cls_qwen"] = LABELS[k % len(LABELS)]
    return rows


def _voters(judges: int) -> list[str]:
    return [] if judges == 1 else ["paper:gpt", "paper:llama_guard", "paper:qwen"][:judges]


def _snapshot_of(store: Store, judges: list[str]):
    path = snapshot.snapshot_path(store, snapshot.selection(judges, None, None, DEFAULT_EMPTY_RULE, False))
    return snapshot.read(path)


@pytest.mark.parametrize("judges", [1, 3])
@pytest.mark.parametrize("forked", [False, True])
def test_the_import_leaves_the_table_a_load_gives(tmp_path, monkeypatch, judges, forked):
    if forked:  # the child forks even for this small corpus (two CPUs and no thread are still needed)
        monkeypatch.setattr(digests, "FORK_MIN", 1)
        monkeypatch.setattr(digests, "_can_fork", lambda: True)
    source = write(_rows(judges), tmp_path / "corpus.parquet")
    with Store(tmp_path / "ws") as store:
        import_corpus(store, source, judge_prefix="paper:")
        made = _snapshot_of(store, _voters(judges))
        assert made is not None
        loaded = load_judged(store, _voters(judges) or None)
        same(loaded, made)
        assert made.values("empty").any() and (made.values("n_unparsed") > 0).any()  # the tricky rows are in
        assert len(list(snapshot.folder(store).iterdir())) == 1  # no part file left behind


def test_the_first_report_reads_the_imports_table_whatever_the_voters_order(tmp_path, monkeypatch):
    from mijabench.report import write_report

    source = write(_rows(3), tmp_path / "corpus.parquet")
    with Store(tmp_path / "ws") as store:
        import_corpus(store, source, judge_prefix="paper:")
        order = ["paper:qwen", "paper:gpt", "paper:llama_guard"]
        expected = load_judged(store, order)

        def no_sql(*args, **kwargs):
            raise AssertionError("the import's snapshot should have been read")

        monkeypatch.setattr(table, "read_responses", no_sql)
        monkeypatch.setattr(table, "_response_rows", no_sql)
        result = write_report(store, tmp_path / "out", judges=order, resamples=50, snapshot=True)
        assert result.analysis.meta["voters"].names == tuple(order)
        same(expected, load_judged(store, order, snapshot=True))


def test_no_table_where_it_would_not_be_the_imports_alone_or_the_vote_is_even(tmp_path):
    source = write(_rows(3), tmp_path / "corpus.parquet")
    with Store(tmp_path / "full") as store:
        import_corpus(store, write(_rows(1), tmp_path / "other.parquet"), judge_prefix="other:")
        before = set(snapshot.folder(store).iterdir())
        import_corpus(store, source, judge_prefix="paper:")  # into a store that holds another corpus
        assert set(snapshot.folder(store).iterdir()) == before
        assert _snapshot_of(store, _voters(3)) is None
    with Store(tmp_path / "even") as store:
        import_corpus(store, write(_rows(2), tmp_path / "two.parquet"), judge_prefix="paper:")
        assert not snapshot.folder(store).exists() or not list(snapshot.folder(store).iterdir())


@pytest.mark.parametrize("failure", ["raises", "killed"])
def test_a_failed_child_only_means_the_table_is_made_here(tmp_path, monkeypatch, failure):
    monkeypatch.setattr(digests, "FORK_MIN", 1)
    monkeypatch.setattr(digests, "_can_fork", lambda: True)
    parent, real = os.getpid(), importsnapshot.judged_table

    def failing(*args, **kwargs):
        if os.getpid() != parent:
            (tmp_path / f"child-{os.getpid()}").touch()  # the table was asked of a forked child
            if failure == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the child failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(importsnapshot, "judged_table", failing)
    source = write(_rows(3), tmp_path / "corpus.parquet")
    with Store(tmp_path / "ws") as store:
        import_corpus(store, source, judge_prefix="paper:")
        same(load_judged(store, _voters(3)), _snapshot_of(store, _voters(3)))
    assert len(list(tmp_path.glob("child-*"))) == 1
