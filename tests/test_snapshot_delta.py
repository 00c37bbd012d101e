"""A store that only grew since its last snapshot is read on top of it (analysis/delta.py): the
snapshot's rows, their votes plus the verdicts added since, and the responses added since. Whatever grew
(new items, models, settings variants, runs, judges outside the vote, verdicts on old responses, model
metadata), the table equals a full load column by column; anything that changed old rows (an upsert that
updates, a delete by another tool, old items joining the benchmark, an item stored for an old response) is
loaded in full."""

from __future__ import annotations

import random

import pytest

from mijabench.analysis import delta, snapshot, table
from mijabench.analysis.table import load_judged
from mijabench.records import BenchmarkItem, Response, SamplingSettings, Verdict
from mijabench.sources.importer import import_corpus
from mijabench.store import Store
from test_import_columns import write
from test_import_snapshot import _rows
from test_judged_snapshot import same

VOTERS = ["j1", "j2", "j3"]
GROUPS = ("women", "black", "jews", "muslim")
STRATEGIES = ("persona_assignment", "chain_of_thought")


class Grower:
    """Writes random rows: failed, blank and cut-off replies, votes by some voters and by an outsider."""

    def __init__(self, store: Store, seed: int):
        self.store, self.rng, self.n = store, random.Random(seed), 0

    def items(self, k: int, bench: str = "b") -> list[BenchmarkItem]:
        out = []
        for _ in range(k):
            self.n += 1
            out.append(BenchmarkItem(
                language=self.rng.choice(("en", "pt")), group=self.rng.choice(GROUPS), seed_text=f"s{self.n}",
                scenario_category="history", scenario_text="a museum", strategy=self.rng.choice(STRATEGIES),
                prompt=f"prompt {self.n}"))
        self.store.put_items(out, bench=bench)
        return out

    def answer(self, items, model: str, temperature: float = 0.0, run: str = "r1") -> list[Response]:
        settings = SamplingSettings(max_tokens=64, temperature=temperature).to_dict()
        out = []
        for item in items:
            kind = self.rng.random()
            out.append(Response(item_id=item.id, model=model, settings=settings, run_id=run,
                                text=None if kind < 0.1 else (" " if kind < 0.2 else f"reply {self.n}"),
                                error="server error" if kind < 0.1 else None,
                                finish_reason="length" if 0.2 <= kind < 0.3 else "stop"))
        self.store.put_responses(out)
        self.judge(out, VOTERS + ["outsider"])
        return out

    def judge(self, responses, judges, share: float = 0.7) -> None:
        verdicts = [Verdict(response_id=r.id, judge=j, label=self.rng.choice(("safe", "harmful", "unparsed")))
                    for r in responses if r.error is None for j in judges if self.rng.random() < share]
        self.store.put_verdicts(verdicts)

    def unjudged(self, judge: str) -> list[Response]:
        done = self.store.judged_response_ids(judge)
        return [r for r in self.store.responses(ok_only=True) if r.id not in done]


def _check(store: Store, monkeypatch, *, on_top: bool, **selection) -> None:
    """The snapshot load equals a full load; ``on_top``: it came from a base and the rows added since."""
    full_reads = []
    real = table.read_responses
    with monkeypatch.context() as mp:
        mp.setattr(table, "read_responses", lambda *a, **k: full_reads.append(1) or real(*a, **k))
        got = load_judged(store, VOTERS, snapshot=True, **selection)
    assert (not full_reads) == on_top
    same(load_judged(store, VOTERS, **selection), got)


SELECTIONS = [{}, {"bench": "b"}, {"models": ["m1", "m2"]}, {"empty_as": "vote"}]


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_store_that_grew_is_read_on_top_of_its_snapshot(tmp_path, monkeypatch, selection, seed):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, seed)
        first = grow.items(12)
        grow.answer(first, "m1")
        grow.answer(first[:8], "m2")
        _check(store, monkeypatch, on_top=False, **selection)
        steps = [
            lambda: grow.answer(grow.items(5), "m1"),  # new items, an old model
            lambda: grow.answer(first, "m3", run="r0"),  # a new model, a run id ranked before the others
            lambda: grow.answer(first[:4], "m1", temperature=0.7, run="r2"),  # a settings variant of m1
            lambda: grow.judge(grow.unjudged("j2"), ["j2"], share=1.0),  # votes on old rows
            lambda: grow.judge(grow.unjudged("judge x"), ["judge x"]),  # a judge outside the vote
            lambda: store.put_model("m2", "openai:m2", family="demo", params_b=7.0),  # model metadata
            lambda: grow.answer(grow.items(3, bench="other"), "m2"),  # another benchmark's items
            lambda: grow.answer(grow.items(2), "m2", run="r9, and more"),  # a new run of an old target
        ]
        grow.rng.shuffle(steps)
        for step in steps:
            step()
            _check(store, monkeypatch, on_top=True, **selection)
        # the snapshots the loads left are kept to the usual number
        assert len(list(snapshot.folder(store).glob("*.arrow"))) <= snapshot.KEEP


def test_retried_replies_are_read_again_on_top_of_the_snapshot(tmp_path, monkeypatch):
    """A failed reply answered on a retry (the upsert updates its row, in another run) keeps its place:
    its flags and run are read again, its new votes are among the verdicts added since."""
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 13)
        responses = grow.answer(grow.items(30), "m1") + grow.answer(grow.items(5, bench="other"), "m2")
        failed = [r for r in responses if r.error is not None]
        assert len(failed) >= 3
        _check(store, monkeypatch, on_top=False, bench="b")
        _check(store, monkeypatch, on_top=False)
        for k, reply in enumerate(failed):
            retried = Response(item_id=reply.item_id, model=reply.model, settings=reply.settings,
                               run_id=f"retry {k % 2}", text=" " if k == 1 else "a reply",
                               finish_reason="length" if k == 2 else "stop")
            store.put_responses([retried])
            grow.judge([retried], VOTERS, share=1.0)
            grow.answer(grow.items(1), "m1")  # and a new row beside it
            _check(store, monkeypatch, on_top=True)
            _check(store, monkeypatch, on_top=True, bench="b")


def test_rows_changed_in_place_are_loaded_in_full(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 3)
        items = grow.items(10)
        grow.answer(items, "m1")
        _check(store, monkeypatch, on_top=False)
        # a verdict deleted by another tool, with a new one added so the last rowid moves on
        with store.transaction() as cur:
            cur.execute("DELETE FROM verdicts WHERE rowid = (SELECT MIN(rowid) FROM verdicts)")
        grow.answer(grow.items(2), "m2")
        _check(store, monkeypatch, on_top=False)
        # the same verdict written again is no change: nothing is updated, the next load starts from the base
        again = store.verdicts("j1")[0]
        store.put_verdicts([again])
        _check(store, monkeypatch, on_top=True)
        # a voter's verdict that had failed, judged again: the upsert updates it in place
        reply = grow.unjudged("j1")[0]
        store.put_verdicts([Verdict(response_id=reply.id, judge="j1", label="unparsed", error="timeout")])
        _check(store, monkeypatch, on_top=True)
        store.put_verdicts([Verdict(response_id=reply.id, judge="j1", label="harmful")])
        _check(store, monkeypatch, on_top=False)


def test_old_rows_joining_the_selection_are_loaded_in_full(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 4)
        ours, theirs = grow.items(6), grow.items(4, bench="other")
        grow.answer(ours + theirs, "m1")
        _check(store, monkeypatch, on_top=False, bench="b")
        store.put_items(theirs, bench="b")  # answered before: their rows join the benchmark among old ones
        _check(store, monkeypatch, on_top=False, bench="b")
        _check(store, monkeypatch, on_top=False)  # the first load of the whole store
        # a response whose item is not stored is left out; once its item is stored, it is a row
        orphan_item = BenchmarkItem(language="en", group="women", seed_text="later", prompt="later",
                                    scenario_category="history", scenario_text="a museum",
                                    strategy="persona_assignment")
        orphan = Response(item_id=orphan_item.id, model="m1", run_id="r1", text="a reply",
                          finish_reason="stop", settings=SamplingSettings(max_tokens=64).to_dict())
        store.put_responses([orphan])
        grow.judge([orphan], VOTERS, share=1.0)
        _check(store, monkeypatch, on_top=True)
        store.put_items([orphan_item], bench="b")
        _check(store, monkeypatch, on_top=False)


def test_a_voter_with_a_new_configuration_is_refused_as_a_full_load_refuses_it(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 5)
        grow.answer(grow.items(6), "m1")
        load_judged(store, VOTERS, snapshot=True)
        responses = grow.answer(grow.items(3), "m1")
        judged = store.judged_response_ids("j1")
        store.put_verdicts([Verdict(response_id=r.id, judge="j1", label="safe", fingerprint="other")
                            for r in responses if r.error is None and r.id not in judged])
        with pytest.raises(Exception) as on_top:
            load_judged(store, VOTERS, snapshot=True)
        with pytest.raises(Exception) as full:
            load_judged(store, VOTERS)
        assert type(on_top.value) is type(full.value) and str(on_top.value) == str(full.value)


def test_a_load_that_saw_a_write_leaves_no_base(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 6)
        grow.answer(grow.items(6), "m1")
        marks = iter([{"generation": 1}, {"generation": 2}])  # the store moved on during the load
        monkeypatch.setattr(store, "change_marks", lambda: next(marks))
        load_judged(store, VOTERS, snapshot=True)
        assert not list(snapshot.folder(store).glob("*.arrow"))


def test_the_imports_table_is_a_base(tmp_path, monkeypatch):
    source = write(_rows(3), tmp_path / "corpus.parquet")
    voters = ["paper:gpt", "paper:llama_guard", "paper:qwen"]
    with Store(tmp_path / "ws") as store:
        import_corpus(store, source, judge_prefix="paper:")
        grow = Grower(store, 7)
        grow.answer(grow.items(4), "another model")
        prints = {judge: next(iter(counts)) for judge, counts in store.judge_fingerprints().items()}
        store.put_verdicts([Verdict(response_id=r.id, judge=j, label="harmful", fingerprint=prints[j])
                            for r in store.responses("another model", ok_only=True) for j in voters])
        bases = []
        real = delta.load
        monkeypatch.setattr(delta, "load", lambda *a, **k: bases.append(real(*a, **k)) or bases[-1])
        got = load_judged(store, voters, snapshot=True)
        assert bases and bases[0] is not None
        same(load_judged(store, voters), got)


def test_rows_removed_behind_the_triggers_back_are_noticed_by_the_counts(tmp_path, monkeypatch):
    """A tool that dropped the schema's triggers and deleted rows: the counts up to the base's last rowids
    no longer match, and the table is loaded in full."""
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 8)
        grow.answer(grow.items(8), "m1")
        for target in ("verdicts", "responses"):
            load_judged(store, VOTERS, snapshot=True)  # leaves a base of the store as it is
            with store.transaction() as cur:
                triggers = cur.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()
                for (trigger,) in triggers:
                    cur.execute(f"DROP TRIGGER {trigger}")
                cur.execute(f"DELETE FROM {target} WHERE rowid = (SELECT MIN(rowid) FROM {target})")
            grow.answer(grow.items(2), "m2")
            _check(store, monkeypatch, on_top=False)


def test_run_ids_holding_a_comma_are_listed_as_a_full_load_lists_them(tmp_path, monkeypatch):
    """A target's runs are one comma-separated list: a run id with a comma in it ("a,b") would make "a" look
    listed already."""
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 9)
        grow.answer(grow.items(3), "m1", run="first,second")
        load_judged(store, VOTERS, snapshot=True)
        grow.answer(grow.items(2), "m1", run="first")
        _check(store, monkeypatch, on_top=True)


def _load(store, monkeypatch, voters) -> bool:
    """Load ``voters``' table through the snapshots, check it equals a full load; whether it was read on top
    of a base."""
    full_reads = []
    real = table.read_responses
    with monkeypatch.context() as mp:
        mp.setattr(table, "read_responses", lambda *a, **k: full_reads.append(1) or real(*a, **k))
        got = load_judged(store, voters, snapshot=True)
    same(load_judged(store, voters), got)
    return not full_reads


def test_new_judges_joining_the_vote_are_read_on_top_of_the_old_vote(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 10)
        responses = grow.answer(grow.items(10), "m1") + grow.answer(grow.items(4), "m2")
        grow.judge(responses, ["j1"], share=1.0)
        assert not _load(store, monkeypatch, ["j1"])
        # two judges run for the first time: three voters now, counted on top of the one-judge table
        grow.judge(store.responses(ok_only=True), ["j7", "j8"], share=0.8)
        assert _load(store, monkeypatch, ["j8", "j1", "j7"])
        # and two more: five voters on top of the three
        grow.judge(store.responses(ok_only=True), ["j5", "j6"], share=0.9)
        assert _load(store, monkeypatch, ["j1", "j5", "j6", "j7", "j8"])
        # fewer voters than any table kept: read in full
        assert not _load(store, monkeypatch, ["j5"])


def test_a_judge_that_had_verdicts_before_joins_the_vote_only_through_a_full_load(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 11)
        grow.answer(grow.items(10), "m1")  # j1 to j3 and the outsider judge part of them
        assert not _load(store, monkeypatch, ["j1"])
        # the outsider's old verdicts are in no vote the one-judge table counted
        assert not _load(store, monkeypatch, ["j1", "j2", "outsider"])


def test_a_narrower_selection_is_read_from_the_whole_stores_table(tmp_path, monkeypatch):
    """A report of one benchmark or a few models, never made before, starts from the whole store's table:
    its rows narrowed to the selection, labelled by the variants the selection holds."""
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 12)
        first = grow.items(8)
        grow.answer(first, "m1")
        grow.answer(first[:5], "m1", temperature=0.7, run="r2")  # m1 in two settings: labels tell them apart
        grow.answer(grow.items(6, bench="other"), "m2")
        _check(store, monkeypatch, on_top=False)
        grow.answer(grow.items(3), "m3")  # and the store grew since
        for selection in ({"bench": "b"}, {"models": ["m1"]}, {"models": ["m3", "m2"]},
                          {"bench": "other", "models": ["m2"]}, {"bench": "b", "models": ["m1", "m3"]}):
            _check(store, monkeypatch, on_top=True, **selection)
        # more selections than snapshots kept: the whole store's is kept beside the newest
        assert len(list(snapshot.folder(store).glob("*.arrow"))) == snapshot.KEEP + 1


def _retry(store: Store, reply: Response, run: str) -> None:
    """A failed reply answered on a retry: the upsert updates its row (a log entry)."""
    store.put_responses([Response(item_id=reply.item_id, model=reply.model, settings=reply.settings,
                                  run_id=run, text="a reply", finish_reason="stop")])


def _log(store: Store) -> list[int]:
    return [r[0] for r in store.query("SELECT seq FROM rewritten ORDER BY seq")]


def test_the_log_of_changed_rows_keeps_only_what_a_base_still_reads(tmp_path, monkeypatch):
    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 21)
        failed = [r for r in grow.answer(grow.items(80), "m1") if r.error is not None]
        assert len(failed) >= 4
        _check(store, monkeypatch, on_top=False)
        # voters' failed verdicts judged again: updates, logged; the load that follows reads the store whole
        for reply in grow.unjudged("j1")[:3]:
            store.put_verdicts([Verdict(response_id=reply.id, judge="j1", label="unparsed", error="timeout")])
            store.put_verdicts([Verdict(response_id=reply.id, judge="j1", label="safe")])
        logged = _log(store)
        assert len(logged) == 3
        _check(store, monkeypatch, on_top=False)
        # its snapshot is the newest of the selection, and reads only entries after its mark: the log keeps
        # its last entry, which numbers the next
        assert _log(store) == logged[-1:]
        stale = next(p for p in snapshot.folder(store).glob("*.arrow")
                     if snapshot.base_of(p)["rewrites"] == logged[-1]).read_bytes()
        _retry(store, failed[0], "retry 1")
        _retry(store, failed[1], "retry 2")
        _check(store, monkeypatch, on_top=True)  # retried rows are read again on top
        assert _log(store) == [logged[-1] + 2]
        # an older base of the same selection (another process wrote it late, say): the entries after its
        # mark are gone, so it is not read on top of
        for old in snapshot.folder(store).glob("*.arrow"):
            old.unlink()
        (snapshot.folder(store) / "late.arrow").write_bytes(stale)
        _retry(store, failed[2], "retry 3")
        _check(store, monkeypatch, on_top=False)
        _retry(store, failed[3], "retry 4")
        _check(store, monkeypatch, on_top=True)


def test_the_log_is_left_alone_while_another_connection_writes(tmp_path):
    import sqlite3
    import threading

    with Store(tmp_path / "ws") as store:
        grow = Grower(store, 22)
        grow.answer(grow.items(10), "m1")
        for reply in grow.unjudged("j2")[:2]:
            store.put_verdicts([Verdict(response_id=reply.id, judge="j2", label="unparsed", error="timeout")])
            store.put_verdicts([Verdict(response_id=reply.id, judge="j2", label="harmful")])
        before = _log(store)
        other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        # the other writer lets go a moment later: a call that waited for it would then drop the entries
        release = threading.Timer(2.0, lambda: other.execute("ROLLBACK"))
        release.start()
        try:
            assert store.forget_rewrites(before[-1]) == 0
        finally:
            release.join()
            other.close()
        assert _log(store) == before
        assert store.query("PRAGMA busy_timeout")[0][0] == 30000
        assert store.forget_rewrites(before[-1]) == len(before) - 1
        assert _log(store) == before[-1:]
