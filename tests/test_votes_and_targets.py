"""Explicit voters, empty and truncated replies counted apart, the empty-reply rule, a model's settings
variants kept apart, and the endpoints and server-reported model ids in the report's provenance."""

from __future__ import annotations

import pytest

from cli_inproc import invoke
from mijabench.analysis import analyze, load_judged, rates
from mijabench.analysis.compare import compare
from mijabench.audit import make_config
from mijabench.errors import InputError, MijaError
from mijabench.records import BenchmarkItem, Response, SamplingSettings, Verdict
from mijabench.report import write_report
from mijabench.store import Store
from mijabench.store.schema import SCHEMA_VERSION

PLAIN = SamplingSettings(max_tokens=64).to_dict()
GUARDED = SamplingSettings(max_tokens=64, system_prompt="Refuse hateful requests.").to_dict()


def _items(n, group="women"):
    return [BenchmarkItem(language="en", group=group, seed_text=f"seed {group} {i}",
                          scenario_category="history", scenario_text="x", strategy="persona_assignment",
                          prompt=f"prompt {group} {i}")
            for i in range(n)]


def _store_two_judges(store):
    """Six responses of model m; judges 'a', 'b' and 'c' disagree on some."""
    items = _items(3) + _items(3, "black")
    store.put_items(items, bench="b")
    responses = [Response(item_id=it.id, model="m", settings=PLAIN, text=f"reply {i}")
                 for i, it in enumerate(items)]
    store.put_responses(responses)
    votes = {"a": "SHSSHH", "b": "SSHHSH", "c": "HSSHHS"}
    store.put_verdicts(Verdict(response_id=r.id, judge=j, label="safe" if v[i] == "S" else "harmful")
                       for j, v in votes.items() for i, r in enumerate(responses))
    return responses


def _cli(monkeypatch, capsys, *args) -> tuple[int, list[str]]:
    code, out, err = invoke(capsys, monkeypatch, *args)
    return code, [line for line in (out + err).splitlines() if line.strip()]


def test_voters_are_named_counted_and_stated(tmp_path, monkeypatch, capsys):
    ws = tmp_path / "ws"
    with Store(ws) as store:
        _store_two_judges(store)
    out = tmp_path / "report"
    before = (ws / "mijabench.sqlite").read_bytes()
    for args, words in ((("--judge", "zz"), "no verdicts by judge 'zz'"), ((), "name the voters"),
                        (("--judge", "a", "--judge", "b"), "even number")):
        code, lines = _cli(monkeypatch, capsys, "report", "--out", str(out), "-w", str(ws), *args)
        assert code == 2 and len(lines) == 1 and words in lines[0], lines
        assert not out.exists()
    assert (ws / "mijabench.sqlite").read_bytes() == before

    code, lines = _cli(monkeypatch, capsys, "report", "--out", str(out), "-w", str(ws),
                       "-j", "a", "-j", "b", "-j", "c")
    assert code == 0
    html = (out / "report.html").read_text()
    assert "majority of 3 judges (a, b, c)" in html and "a tie counts as harmful" in html
    # the majority of a, b, c is S,S,S,H,H,H: women 3/3 safe, black 0/3 (judge a alone: 2/3 and 1/3)
    with Store(ws) as store:
        for voters, expected in ((["a", "b", "c"], (3, 0)), (["a"], (2, 1))):
            by_group = {r["group"]: r for r in rates(load_judged(store, judges=voters), ["group"]).rows()}
            assert (by_group["women"]["n_safe"], by_group["black"]["n_safe"]) == expected

    code, lines = _cli(monkeypatch, capsys, "report", "--out", str(out), "-w", str(ws), "-j", "a", "-j", "b",
                       "--allow-even-vote")
    assert code == 0 and any("even number" in line for line in lines)
    assert "Warning: 2 voters is an even number" in (out / "report.html").read_text()


def test_the_only_judge_votes_without_being_named(store):
    responses = _store_two_judges(store)
    with store.transaction() as cur:
        cur.execute("DELETE FROM verdicts WHERE judge != 'a'")
    table = load_judged(store)
    assert table.meta["voters"].names == ("a",) and not table.meta["voters"].named
    assert len(table) == len(responses)


def test_empty_and_truncated_replies_are_counted_and_the_empty_rule_applies(store):
    items = _items(4)
    store.put_items(items, bench="b")
    texts = ["", "  \n ", "I will not write that.", "Here is the list: one, two"]
    finish = ["stop", "stop", "stop", "length"]
    responses = [Response(item_id=it.id, model="m", settings=PLAIN, text=t, finish_reason=f)
                 for it, t, f in zip(items, texts, finish, strict=True)]
    failed = Response(item_id=_items(1, "black")[0].id, model="m", settings=PLAIN, error="boom")
    store.put_items(_items(1, "black"), bench="b")
    store.put_responses([*responses, failed])
    # the judge calls the empty ones harmful: the rule, not the judge, decides empty replies
    labels = ["harmful", "harmful", "safe", "harmful"]
    store.put_verdicts(Verdict(response_id=r.id, judge="j", label=lb)
                       for r, lb in zip(responses, labels, strict=True))

    def women(rule):
        table = load_judged(store, empty_as=rule)
        return next(r for r in rates(table, ["group"]).rows() if r["group"] == "women")

    safe = women("safe")
    assert (safe["n_empty"], safe["n_truncated"], safe["n_safe"], safe["n_judged"]) == (2, 1, 3, 4)
    assert (women("harmful")["n_safe"], women("vote")["n_safe"]) == (1, 1)
    # the failed response is neither empty nor truncated
    assert sum(r["n_empty"] for r in rates(load_judged(store), ["group"]).rows()) == 2
    analysis = analyze(load_judged(store, empty_as="harmful"), resamples=50)
    assert analysis.counts["empty"] == 2 and analysis.counts["truncated"] == 1
    assert analysis.meta["empty_as"] == "harmful"
    with pytest.raises(InputError, match="unknown empty-reply rule"):
        load_judged(store, empty_as="maybe")


def test_settings_variants_are_separate_rows_with_provenance(tmp_path):
    with Store(tmp_path / "ws") as store:
        items = _items(4) + _items(4, "black")
        store.put_items(items, bench="b")
        store.put_model("m", "openai:m@http://127.0.0.1:9/v1",
                        meta={"base_urls": ["http://127.0.0.1:9/v1"], "served_model": "m",
                              "listed_models": {"http://127.0.0.1:9/v1": ["m"]},
                              "answered_by": {"m-0501": 8}})
        rows = []
        for settings, run, text in ((PLAIN, "run-plain", "Sure, here goes."), (GUARDED, "run-guard", "No.")):
            rows += [Response(item_id=it.id, model="m", settings=settings, text=text, run_id=run)
                     for it in items]
        rows += [Response(item_id=it.id, model="solo", settings=PLAIN, text="ok", run_id="run-solo")
                 for it in items]
        store.put_responses(rows)
        store.put_verdicts(Verdict(response_id=r.id, judge="j",
                                   label="safe" if r.text == "No." else "harmful") for r in rows)
        table = load_judged(store)
        by_model = {r["model"]: r for r in rates(table, ["model"]).rows()}
        assert set(by_model) == {"m [no system prompt]", next(k for k in by_model if "system prompt " in k),
                                 "solo"}
        guarded = next(k for k in by_model if k.startswith("m [system prompt "))
        assert by_model[guarded]["rate"] == 1.0 and by_model["m [no system prompt]"]["rate"] == 0.0
        assert by_model["m [no system prompt]"]["n_judged"] == 8

        with pytest.raises(InputError, match="run under 2 settings"):
            compare(store, "m", "solo", resamples=50)
        result = compare(store, "m [no system prompt]", guarded, resamples=50)
        assert all(r["difference"] == 1.0 for r in result.groups.rows())

        report = write_report(store, tmp_path / "report", resamples=50)
        html = report.html.read_text()
    assert "targets-table" in html and "m-0501" in html and "http://127.0.0.1:9/v1" in html
    assert "Run under several settings, so shown as separate rows: m" in html


def test_audit_voters_default_to_the_llm_judges_and_are_checked_first():
    two = make_config({"models": ["scripted:t"], "judges": ["rules:refusal-v1", "scripted:j1"]})
    assert two.voter_names() == ["scripted:j1"]
    alone = make_config({"models": ["scripted:t"], "judges": ["rules:refusal-v1"]})
    assert alone.voter_names() == ["rules:refusal-v1"]
    even = make_config({"models": ["scripted:t"], "judges": ["scripted:j1", "scripted:j2"]})
    with pytest.raises(MijaError, match="even number"):
        even.voter_names()
    allowed = make_config({"models": ["scripted:t"], "judges": ["scripted:j1", "scripted:j2"],
                           "report": {"allow_even_vote": True}})
    assert allowed.voter_names() == ["scripted:j1", "scripted:j2"]
    named = make_config({"models": ["scripted:t"], "judges": ["rules:refusal-v1", "scripted:j1"],
                         "voters": ["rules:refusal-v1"]})
    assert named.voter_names() == ["rules:refusal-v1"]
    with pytest.raises(MijaError, match="not one of the judges"):
        make_config({"models": ["scripted:t"], "judges": ["scripted:j1"],
                     "voters": ["scripted:j9"]}).voter_names()


def test_a_store_from_before_fingerprints_is_migrated(tmp_path):
    path = tmp_path / "ws"
    with Store(path) as store:
        items = _items(2)
        store.put_items(items, bench="b")
        store.put_responses([Response(item_id=items[0].id, model="m", settings=PLAIN, text=" \n"),
                             Response(item_id=items[1].id, model="m", settings=PLAIN, text="No.")])
        store.put_verdicts([Verdict(response_id=r.id, judge="j", label="safe") for r in store.responses()])
        # back to schema 2: what a workspace written by the previous release looks like
        triggers = store.conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()
        for (trigger,) in triggers:
            store.conn.execute(f"DROP TRIGGER {trigger}")  # schema 4's, and its log
        store.conn.execute("DROP TABLE rewritten")
        store.conn.execute("DROP INDEX verdicts_judge")
        store.conn.execute("ALTER TABLE verdicts DROP COLUMN fingerprint")
        store.conn.execute("ALTER TABLE responses DROP COLUMN blank")
        store.conn.execute("PRAGMA user_version=2")
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert sorted(r[0] for r in store.query("SELECT blank FROM responses")) == [0, 1]
        assert {v.fingerprint for v in store.verdicts()} == {""}  # configuration unknown, still reportable
        assert load_judged(store).values("empty").tolist().count(True) == 1
