"""The judged table read from SQLite in column batches (``analysis.columnread``) is the table the row-by-row
query gives: every selection, every kind of response, stores holding ids other tools wrote, several batches,
and the verdicts read on the main connection when a second one cannot be opened."""

import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from mijabench.analysis import columnread, table, voters
from mijabench.analysis.table import load_judged
from mijabench.analysis.voters import resolve_voters
from mijabench.errors import InputError
from mijabench.records import BenchmarkItem, Response, SamplingSettings, Verdict
from mijabench.store import Store
from test_judged_snapshot import same

PLAIN = SamplingSettings(max_tokens=64).to_dict()
GUARDED = SamplingSettings(max_tokens=64, system_prompt="Refuse.").to_dict()
LABELS = ("safe", "harmful", "unparsed")


def _fill(store: Store, seed: int = 0) -> None:
    """Two benchmarks, three models (one under two settings), two runs, failed, empty and truncated replies,
    responses nobody judged, four judges (j4 judging only some), a few errored verdicts."""
    rng = random.Random(seed)
    items = [BenchmarkItem(language=lang, group=group, seed_text=f"seed {i}", scenario_category="history",
                           scenario_text="x", strategy=rng.choice(["persona_assignment", "chain_of_thought"]),
                           prompt=f"prompt {i}")
             for i, (lang, group) in enumerate((lang, group) for lang, group in
                                                [("en", "women"), ("en", "black"), ("pt", "women")] * 6)]
    store.put_items(items[:10], bench="first")
    store.put_items(items[10:], bench="second")
    responses = []
    for item in items:
        for model, settings in (("m1", PLAIN), ("m2", PLAIN), ("m2", GUARDED), ("m3", PLAIN)):
            kind = rng.random()
            responses.append(Response(
                item_id=item.id, model=model, settings=settings, run_id=rng.choice(["run-a", "run-b"]),
                text=None if kind < 0.1 else ("  " if kind < 0.2 else f"reply {rng.random()}"),
                error="server error" if kind < 0.1 else None,
                finish_reason="length" if 0.2 <= kind < 0.35 else "stop"))
    rng.shuffle(responses)  # rowid order is not item order
    store.put_responses(responses)
    verdicts = []
    for response in responses:
        for judge in ("j1", "j2", "j3", "j4"):
            if rng.random() < (0.5 if judge == "j4" else 0.9):
                errored = rng.random() < 0.05
                verdicts.append(Verdict(response_id=response.id, judge=judge,
                                        label="unparsed" if errored else rng.choice(LABELS),
                                        error="timeout" if errored else None))
    store.put_verdicts(verdicts)


@pytest.fixture
def filled(store):
    _fill(store)
    return store


def _columns(store, judges, facts):
    """The columns a full load reads in batches (None: it gave up), the verdicts read in a thread."""
    with ThreadPoolExecutor(1) as pool:
        verdicts = columnread.aside(pool, store, columnread.verdict_labels, judges)
        return columnread.with_votes(columnread.read_responses(store, [], [], facts), verdicts)


def _batched(store):
    return _columns(store, ["j1"], lambda: table._store_facts(store.query))


def _by_rows(monkeypatch):
    monkeypatch.setattr(table, "read_responses", lambda *a, **k: None)


SELECTIONS = [dict(judges=["j1", "j2", "j3"]), dict(judges=["j1", "j2", "j3", "j4"], allow_even_vote=True),
              dict(judges=["j4"]), dict(judges=["j2"], models=["m2"]),
              dict(judges=["j1", "j3", "j4"], bench="second", models=["m3", "m1"]),
              dict(judges=["j1"], empty_as="vote")]


@pytest.mark.parametrize(("batch", "case_runs"), [(columnread.BATCH, columnread.CASE_RUNS), (7, 0)])
def test_column_batches_give_the_table_of_the_row_query(filled, monkeypatch, batch, case_runs):
    """In one batch or many; with each response's run coded by SQLite or, past CASE_RUNS runs, here."""
    monkeypatch.setattr(columnread, "BATCH", batch)
    monkeypatch.setattr(columnread, "CASE_RUNS", case_runs)
    fast = [load_judged(filled, **selection) for selection in SELECTIONS]
    assert _batched(filled) is not None  # the batches read this store: not the row query twice
    _by_rows(monkeypatch)
    for selection, table_fast in zip(SELECTIONS, fast, strict=True):
        slow = load_judged(filled, **selection)
        same(table_fast, slow)
        assert len(slow) > 0 and slow.columns["n_votes"].sum() > 0


def test_the_table_counts_what_was_stored(filled):
    """Not only equal to the row query: each count checked against the verdicts themselves."""
    judged = load_judged(filled, ["j1", "j2", "j3"], models=["m1"])
    labels: dict[str, list[str]] = {}
    for rid, label in filled.query("SELECT v.response_id, v.label FROM verdicts v JOIN responses r "
                                   "ON r.id = v.response_id WHERE r.model = 'm1' AND v.judge != 'j4'"):
        labels.setdefault(rid, []).append(label)
    ids = judged.values("response_id")
    for name, label in (("n_safe", "safe"), ("n_harmful", "harmful"), ("n_unparsed", "unparsed")):
        assert judged.columns[name].tolist() == [labels.get(r, []).count(label) for r in ids]
    flags = dict(((r[0]), r[1:]) for r in filled.query(
        "SELECT id, error IS NOT NULL, blank, finish_reason = 'length' AND error IS NULL FROM responses"))
    assert judged.columns["failed"].tolist() == [bool(flags[r][0]) for r in ids]
    assert judged.columns["truncated"].tolist() == [bool(flags[r][2]) for r in ids]
    assert judged.columns["failed"].any() and judged.columns["truncated"].any()


def test_ids_of_another_tool_are_read_row_by_row_with_the_same_result(filled, monkeypatch):
    # a response and verdicts written by another tool: an id that is not 16 hex digits, and verdicts on
    # responses that are not stored (one with an upper-case id that would read as a stored one's digits)
    item = filled.query("SELECT id FROM items LIMIT 1")[0][0]
    stored = filled.query("SELECT id FROM responses WHERE error IS NULL LIMIT 1")[0][0]
    with filled.transaction() as cur:
        cur.execute("INSERT INTO verdicts (id, response_id, judge, label, raw, reasoning, run_id, "
                    "created_at) VALUES ('v-x1', ?, 'j1', 'harmful', '', '', 'other', 'now'), "
                    "('v-x2', 'not-a-hex-id', 'j1', 'harmful', '', '', 'other', 'now')", [stored.upper()])
    fast = load_judged(filled, ["j1"])
    _by_rows(monkeypatch)
    same(fast, load_judged(filled, ["j1"]))
    monkeypatch.undo()
    with filled.transaction() as cur:
        cur.execute("INSERT INTO responses (id, item_id, model, settings_key, settings, text, attempts, "
                    "run_id, created_at) VALUES ('R-other', ?, 'm1', 'k', '{}', 'reply', 1, 'run-a', 'now')",
                    [item])
    assert _batched(filled) is None
    judged = load_judged(filled, ["j1"])
    assert "R-other" in judged.cat("response_id").categories and len(judged) == len(fast) + 1


@pytest.mark.parametrize("where", ["connect", "query"])
def test_the_lanes_read_on_the_main_connection_when_a_second_one_fails(filled, monkeypatch, where):
    expected = load_judged(filled, ["j1", "j2", "j3"])

    def refused(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    class Refusing:  # opens, then fails on its first query, as a read-only open of a WAL store can
        execute = refused

        def close(self):
            pass

    monkeypatch.setattr(columnread, "_read_only", refused if where == "connect" else lambda path: Refusing())
    same(expected, load_judged(filled, ["j1", "j2", "j3"]))


def test_a_store_of_one_run_reads_as_the_row_query_reads_it(filled, monkeypatch):
    with filled.transaction() as cur:
        cur.execute("UPDATE responses SET run_id = 'run-b'")
    fast = load_judged(filled, ["j1"], models=["m2"])
    assert fast.cat("run_id").categories == ("run-b",)
    _by_rows(monkeypatch)
    same(fast, load_judged(filled, ["j1"], models=["m2"]))


def test_hex_keys_are_the_ids_digits_and_nothing_else_is_read():
    ids = ["0123456789abcdef", "ffffffffffffffff", "0000000000000000", "8000000000000001"]
    keys = columnread.hex_keys(",".join(ids).encode())
    assert keys.tolist() == [int(i, 16) for i in ids]
    assert columnread.hex_keys(ids[0].encode()).tolist() == [int(ids[0], 16)]
    for bad in (["0123456789ABCDEF"], ["0123456789abcdeg"], ["0123456789abcde"], ["0123456789abcdef0"],
                ["0123456789abcde", "f0123456789abcdef"],  # one short, one long: the same total length
                ["0123456789abcdef", "0123456789abcde,"], ["0123456789abcde "], [" 123456789abcdef"],
                ["01234567 9abcdef"], ["0123456789abcdeF"], ["\t123456789abcdef"], ["0123456789abcdé"],
                ["0123456789abcdef", ",123456789abcdef"], ["0123  6789abcdef"], ["0123,,6789abcdef"]):
        assert columnread.hex_keys(",".join(bad).encode()) is None, bad


def test_voters_from_the_index_match_the_exact_count(filled, monkeypatch):
    # j4's verdicts on m3 all errored: with m3 selected it has no fingerprint, as the exact query says
    with filled.transaction() as cur:
        cur.execute("UPDATE verdicts SET error = 'timeout', label = 'unparsed' WHERE judge = 'j4' AND "
                    "response_id IN (SELECT id FROM responses WHERE model = 'm3')")
    cases = [((["j1", "j2", "j3"]), ("", [])), ((["j4"]), ("r.model IN (?)", ["m3"])),
             ((["j4"]), ("r.model IN (?)", ["m1"])), ((["j1", "j4", "j2"]), ("", []))]
    fast = [resolve_voters(filled, judges, selection=sel) for judges, sel in cases]
    assert fast[1].fingerprints == {} and fast[2].fingerprints.keys() == {"j4"}
    monkeypatch.setattr(voters, "_single_configurations", lambda *a, **k: None)
    assert fast == [resolve_voters(filled, judges, selection=sel) for judges, sel in cases]


def test_a_judge_mixing_configurations_is_still_refused(filled):
    with filled.transaction() as cur:
        cur.execute("UPDATE verdicts SET fingerprint = 'other' WHERE judge = 'j2' AND rowid % 3 = 0")
    with pytest.raises(Exception, match="2 configurations"):
        load_judged(filled, ["j1", "j2", "j3"])
    assert len(load_judged(filled, ["j1"])) > 0


def test_a_target_written_between_the_two_reads_is_never_given_another_name(filled):
    """The facts lane read the targets before a run of a new model wrote one: the batches give up (the row
    query then numbers targets itself) rather than shift every later target's code by one."""
    stored, runs = table._store_facts(filled.query)
    assert _columns(filled, ["j1"], lambda: (stored[1:], runs)) is None
    assert _columns(filled, ["j1"], lambda: (stored, runs)) is not None


def _without_json(query):
    """``query`` on an SQLite built without JSON functions."""
    def run(sql, args=()):
        if "json_" in sql:
            raise sqlite3.OperationalError("no such function: json_group_array")
        return query(sql, args)
    return run


def test_store_facts_list_every_run_in_sqlites_order(filled):
    """The run ids gathered from the targets' pass are SELECT DISTINCT's, in its order, for ids with commas,
    quotes and non-ASCII letters too; an SQLite without JSON functions gets the same from two queries."""
    odd = ["run,with,commas", 'run "quoted"', "run-\u00e9t\u00e9", "Run-upper", "run-\u4e2d"]
    item = filled.items("first")[0]
    filled.put_responses([Response(item_id=item.id, model=f"m9-{i}", settings=PLAIN, run_id=run, text="r")
                          for i, run in enumerate(odd)])
    stored, runs = table._store_facts(filled.query)
    expected = tuple(r[0] for r in filled.query("SELECT DISTINCT run_id FROM responses ORDER BY run_id"))
    assert runs == expected and set(odd) <= set(runs) and len(runs) == 2 + len(odd)
    assert table._store_facts(_without_json(filled.query)) == (stored, runs)
    assert stored == filled.query("SELECT model, settings_key, MIN(settings), GROUP_CONCAT(DISTINCT run_id), "
                                  "COUNT(*) FROM responses GROUP BY model, settings_key "
                                  "ORDER BY model, settings_key")


def test_the_judge_census_answers_what_the_index_scans_did(filled):
    """Voters resolved from the census carry each judge's fingerprint as the verdicts hold it, in the order
    named; the census's per-judge counts are GROUP BY judge's; a judge with two configurations, or one
    without verdicts, is refused."""
    census = voters.judge_census(filled.query)
    assert table.judge_counts(census) == [list(r) for r in filled.query(
        "SELECT judge, COUNT(*) FROM verdicts GROUP BY judge ORDER BY judge")]
    for names in (["j1"], ["j3", "j1", "j2"], ["j2", "j4", "j1"]):
        resolved = resolve_voters(filled, names, census=census)
        expected = {j: f for j, f in filled.query("SELECT DISTINCT judge, fingerprint FROM verdicts "
                                                  "WHERE error IS NULL")}
        assert resolved.names == tuple(names) and resolved.fingerprints == {j: expected[j] for j in names}
        assert resolved == resolve_voters(filled, names)  # the census read here when not given
    with pytest.raises(InputError, match="no verdicts by judge 'j9'"):
        resolve_voters(filled, ["j9"], census=census)
    two = [r[0] for r in filled.query("SELECT id FROM responses LIMIT 2")]
    filled.put_verdicts([Verdict(response_id=response, judge="j5", label="safe", fingerprint=fingerprint)
                         for response, fingerprint in zip(two, ("a" * 16, "b" * 16), strict=True)])
    census = voters.judge_census(filled.query)
    for given in (census, None):
        with pytest.raises(InputError, match="2 configurations"):
            resolve_voters(filled, ["j5"], census=given)


def _one_run_per_target(store: Store) -> None:
    """Each target's responses from one run of its own (a run per model, as `mijabench run` writes them),
    in shuffled rowid order, with two judges' verdicts."""
    rng = random.Random(5)
    items = [BenchmarkItem(language="en", group="women", seed_text=f"s {i}", scenario_category="history",
                           scenario_text="x", strategy="persona_assignment", prompt=f"p {i}")
             for i in range(6)]
    store.put_items(items, bench="b")
    responses = [Response(item_id=item.id, model=model, settings=settings, run_id=f"run-{model}-{n}",
                          text=f"reply {rng.random()}", finish_reason="stop")
                 for item in items for n, (model, settings) in enumerate((("m1", PLAIN), ("m2", GUARDED),
                                                                          ("m2", PLAIN)))]
    rng.shuffle(responses)
    store.put_responses(responses)
    store.put_verdicts(Verdict(response_id=r.id, judge=j, label=rng.choice(LABELS))
                       for r in responses for j in ("j1", "j2", "j3"))


def test_the_facts_list_each_targets_rowids_and_runs(filled):
    """The listing a full load codes targets and runs from is what SQLite holds per target."""
    stored, runs, listing = table._store_facts(filled.query, True)
    assert (stored, runs) == table._store_facts(filled.query)
    assert len(listing) == len(stored) == 4
    for (model, key, *_), (rowids, target_runs) in zip(stored, listing, strict=True):
        assert rowids.tolist() == [r[0] for r in filled.query(
            "SELECT rowid FROM responses WHERE model = ? AND settings_key = ? ORDER BY rowid", [model, key])]
        assert sorted(target_runs) == [r[0] for r in filled.query(
            "SELECT DISTINCT run_id FROM responses WHERE model = ? AND settings_key = ? ORDER BY run_id",
            [model, key])]
    # an SQLite without JSON functions gives no listing: targets and runs are then read as before
    assert len(table._store_facts(_without_json(filled.query), True)) == 2


def _spied(monkeypatch, *names) -> dict[str, int]:
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(columnread, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(columnread, name, spy)
    return calls


def test_targets_and_runs_are_coded_from_the_facts_when_each_target_has_one_run(store, monkeypatch):
    """No second read of the model index or of the runs: and the same table as the row query."""
    _one_run_per_target(store)
    calls = _spied(monkeypatch, "_target_codes", "_run_codes")
    fast = load_judged(store, ["j1", "j2", "j3"])
    assert calls == {"_target_codes": 0, "_run_codes": 0}
    assert sorted(set(fast.values("run_id"))) == ["run-m1-0", "run-m2-1", "run-m2-2"]
    _by_rows(monkeypatch)
    same(fast, load_judged(store, ["j1", "j2", "j3"]))


def test_a_target_with_several_runs_has_its_runs_read_again(filled, monkeypatch):
    """The fixture's targets each mix two runs: the facts cannot code them, each response's run is read."""
    calls = _spied(monkeypatch, "_target_codes", "_run_codes")
    fast = load_judged(filled, ["j1", "j2", "j3"])
    assert calls == {"_target_codes": 0, "_run_codes": 1}
    _by_rows(monkeypatch)
    same(fast, load_judged(filled, ["j1", "j2", "j3"]))


@pytest.mark.parametrize("missing", ["first", "last"])
def test_a_response_written_after_the_facts_is_coded_from_the_index(store, monkeypatch, missing):
    """The facts lane listed the targets' rowids before a run wrote one more response of a known target:
    that response is not listed, so the targets are read again from the model index (never code -1)."""
    _one_run_per_target(store)
    stored, runs, listing = table._store_facts(store.query, True)
    rowids, target_runs = listing[0]
    short = [(rowids[1:] if missing == "first" else rowids[:-1], target_runs), *listing[1:]]
    calls = _spied(monkeypatch, "_target_codes", "_run_codes")
    late = columnread.read_responses(store, [], [], lambda: (stored, runs, short))
    assert calls["_target_codes"] == 1
    full = columnread.read_responses(store, [], [], lambda: (stored, runs))
    assert late["model"].tolist() == full["model"].tolist() and (late["model"] >= 0).all()
    assert late["run_id"].tolist() == full["run_id"].tolist()


def test_the_stored_judges_are_select_distincts(store):
    """One index seek per judge finds every judge, names that are prefixes of others and non-ASCII ones
    included, and none in an empty store."""
    query = store.query
    assert columnread.stored_judges(query) == set()
    _one_run_per_target(store)
    response = store.query("SELECT id FROM responses LIMIT 1")[0][0]
    odd = ["j", "j1 ", "j1\u00e9", "J1", "\u4e2d", ""]
    store.put_verdicts(Verdict(response_id=response, judge=j, label="safe") for j in odd)
    assert columnread.stored_judges(query) == {r[0] for r in query("SELECT DISTINCT judge FROM verdicts")}
    assert set(odd) <= columnread.stored_judges(query)


def test_items_read_before_a_new_item_are_read_again(filled):
    """The items lane ran before the responses: a response whose item it did not see makes the load read
    the items again, rather than give that response another item's attributes."""
    rows = filled.query(table.ITEM_ROWS_SQL)
    used = [row[0] for row in rows]
    assert table._item_rows(filled, used, rows) is rows
    again = table._item_rows(filled, used, rows[:-1])
    assert again == rows and again is not rows
    assert table._item_rows(filled, [], rows) == []


def test_an_unknown_named_voter_is_refused_while_its_verdicts_were_read_early(filled):
    """Named voters' verdicts start before the census checks the names: a name the store lacks is still
    refused, and nothing is left running."""
    import threading
    before = threading.active_count()
    with pytest.raises(InputError, match="no verdicts by judge 'j9'"):
        load_judged(filled, ["j1", "j9", "j2"])
    assert threading.active_count() == before


def test_votes_are_counted_for_the_voters_resolved_not_the_names_given(filled, monkeypatch):
    """The verdicts read early are those of the names given; were the voters resolved to others, the votes
    are read again for them."""
    expected = load_judged(filled, ["j1"])
    real = table.resolve_voters
    monkeypatch.setattr(table, "resolve_voters",
                        lambda store, judges, **kw: real(store, ["j1"], **kw))
    same(expected, load_judged(filled, ["j1", "j2", "j3"]))
