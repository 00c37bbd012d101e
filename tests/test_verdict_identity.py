"""What produced a verdict: judge fingerprints, re-judging stale verdicts, reports that refuse to mix two
configurations of one judge, and a judge's own system prompt reaching the judge."""

from __future__ import annotations

import copy

import pytest

from cli_inproc import invoke, make_items
from mijabench.analysis import load_judged
from mijabench.backends.registry import ModelConfig
from mijabench.errors import InputError
from mijabench.judge import RULES_JUDGE, judge_responses, rules
from mijabench.judge.identity import llm_judge_identity, rules_judge_identity
from mijabench.judge.runner import judge_requests, resolve_judges
from mijabench.records import BenchmarkItem, Response, SamplingSettings
from mijabench.run.engine import RunStats
from mijabench.store import Store

SETTINGS = SamplingSettings().to_dict()


def _populate(store, n=6):
    items = make_items(n, groups=("women",))
    store.put_items(items, bench="b")
    # even replies refuse with a phrase the test later removes from the list; odd ones comply
    texts = ["I refuse to write that." if i % 2 == 0 else "Sure, the story goes like this and on." * 3
             for i in range(n)]
    responses = [Response(item_id=it.id, model="m", settings=SETTINGS, text=t)
                 for it, t in zip(items, texts, strict=True)]
    store.put_responses(responses)
    return responses


def _without_phrase(phrase):
    """The rule judge's phrase files with one refusal phrase removed: another configuration."""
    files = copy.deepcopy(rules.load_phrase_files())
    for data in files.values():
        data["refusal"] = [p for p in data.get("refusal") or [] if p != phrase]
    return files


def test_fingerprints_change_with_what_decides_a_verdict(monkeypatch):
    base = llm_judge_identity("j", "openai:j@http://127.0.0.1:8001/v1", SamplingSettings().to_dict(), {})
    other_url = llm_judge_identity("j", "openai:j@http://127.0.0.1:8002/v1", SamplingSettings().to_dict(), {})
    other_system = llm_judge_identity("j", "openai:j@http://127.0.0.1:8001/v1",
                                      SamplingSettings(system_prompt="Be strict.").to_dict(), {})
    other_budget = llm_judge_identity("j", "openai:j@http://127.0.0.1:8001/v1",
                                      SamplingSettings(max_tokens=64).to_dict(), {})
    prints = {x.fingerprint for x in (base, other_url, other_system, other_budget)}
    assert len(prints) == 4
    # the same configuration gives the same fingerprint
    again = llm_judge_identity("j", "openai:j@http://127.0.0.1:8001/v1", SamplingSettings().to_dict(), {})
    assert again.fingerprint == base.fingerprint
    # an edited judge prompt file changes it too
    from mijabench.judge import prompts
    edited = copy.deepcopy(prompts.prompt_files())
    edited["en"]["template"] += "\nOne more rule."
    monkeypatch.setattr(prompts, "prompt_files", lambda: edited)
    changed = llm_judge_identity("j", "openai:j@http://127.0.0.1:8001/v1", SamplingSettings().to_dict(), {})
    assert changed.fingerprint != base.fingerprint

    rules_before = rules_judge_identity(RULES_JUDGE)
    edited_phrases = _without_phrase("i refuse")
    monkeypatch.setattr(rules, "load_phrase_files", lambda: edited_phrases)
    assert rules_judge_identity(RULES_JUDGE).fingerprint != rules_before.fingerprint


def test_stale_verdicts_are_rejudged_unless_kept_and_reports_refuse_to_mix(store, monkeypatch):
    _populate(store)
    first = judge_responses(store, [RULES_JUDGE])
    (stats,) = first.judges
    assert stats.pending == 6 and stats.stale == 0
    old_print = stats.fingerprint
    assert {v.fingerprint for v in store.verdicts()} == {old_print}
    labels_before = {v.response_id: v.label for v in store.verdicts()}
    assert list(labels_before.values()).count("safe") == 3

    # Another phrase list: the same judge name now stands for another configuration.
    edited_phrases = _without_phrase("i refuse")
    monkeypatch.setattr(rules, "load_phrase_files", lambda: edited_phrases)
    kept = judge_responses(store, [RULES_JUDGE], keep_stale=True)
    assert kept.judges[0].pending == 0 and kept.judges[0].kept_stale == 6
    assert {v.fingerprint for v in store.verdicts()} == {old_print}

    # A report over a mix of both configurations is refused; so make a mix: re-judge only part.
    with store.transaction() as cur:
        cur.execute("UPDATE verdicts SET fingerprint='0ld0ld0ld0ld' WHERE rowid IN "
                    "(SELECT rowid FROM verdicts LIMIT 2)")
    with pytest.raises(InputError, match="2 configurations"):
        load_judged(store)

    again = judge_responses(store, [RULES_JUDGE])
    (stats,) = again.judges
    assert stats.stale == 6 and stats.pending == 6 and stats.fingerprint != old_print
    verdicts = store.verdicts()
    assert len(verdicts) == 6 and {v.fingerprint for v in verdicts} == {stats.fingerprint}
    assert {v.run_id for v in verdicts} == {again.run_id}  # each one was judged again in that run
    assert load_judged(store).meta["voters"].fingerprints == {RULES_JUDGE: stats.fingerprint}
    # nothing left to do with the current configuration
    assert judge_responses(store, [RULES_JUDGE]).judges[0].pending == 0


def test_report_cli_refuses_mixed_fingerprints_without_writing(tmp_path, monkeypatch, capsys):
    ws = tmp_path / "ws"
    with Store(ws) as store:
        _populate(store)
        judge_responses(store, [RULES_JUDGE])
        with store.transaction() as cur:
            cur.execute("UPDATE verdicts SET fingerprint='0ld0ld0ld0ld' WHERE rowid IN "
                        "(SELECT rowid FROM verdicts LIMIT 1)")
    before = (ws / "mijabench.sqlite").read_bytes()
    out = tmp_path / "report"
    code, stdout, stderr = invoke(capsys, monkeypatch, "report", "--out", str(out), "-w", str(ws))
    assert code == 2
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "configurations" in lines[0], lines
    assert not out.exists()
    assert (ws / "mijabench.sqlite").read_bytes() == before


def test_a_judges_system_prompt_reaches_the_judge():
    plain, strict = resolve_judges([
        ModelConfig(spec="scripted:plain", name="plain"),
        ModelConfig(spec="scripted:strict", name="strict",
                    settings=SamplingSettings(system_prompt="BE STRICT.")),
    ])
    assert plain.identity.fingerprint != strict.identity.fingerprint
    item = BenchmarkItem(language="pt", group="women", seed_text="s", scenario_category="history",
                         scenario_text="x", strategy="persona_assignment", prompt="p")
    response = Response(item_id=item.id, model="m", settings=SETTINGS, text="r")
    (req_plain,) = judge_requests([response], {item.id: item}, plain.settings, RunStats())
    (req_strict,) = judge_requests([response], {item.id: item}, strict.settings, RunStats())
    assert req_strict.messages[0]["role"] == "system"
    assert req_strict.messages[0]["content"].startswith("BE STRICT.")
    # the judge prompt's own system message is still there, after it
    assert req_strict.messages[0]["content"].endswith(req_plain.messages[0]["content"])
    assert "BE STRICT." not in req_plain.messages[0]["content"]
    # sent once: not left in the settings, where a backend would add a second system message
    assert req_strict.settings.system_prompt is None
    # the judge still decodes greedily with a fixed seed
    assert (strict.settings.temperature, strict.settings.seed) == (0.0, 0)
