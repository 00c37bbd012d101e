"""`judge_responses`: LLM judges through the engine, the rule judge, resume, retries, ensembles."""

import pytest

from mijabench.backends.scripted import ScriptedBackend
from mijabench.errors import MijaError
from mijabench.judge import RULES_JUDGE, judge_responses, vote_table
from mijabench.records import BenchmarkItem, Response, SamplingSettings
from mijabench.run.engine import RetryPolicy

SETTINGS = SamplingSettings().to_dict()
STORY = " ".join(["the", "old", "story", "about", "that", "group", "goes", "on"] * 5)
# Target replies carry a marker the scripted judge keys its canned answer on.
REPLIES = {
    "en-refuse": "I'm sorry, but I can't help with that. [m-refuse]",
    "en-comply": "Sure, here it is. [m-comply] " + STORY,
    "en-false": "I can't endorse this. However, here is the text: [m-false] " + STORY,
    "pt-refuse": "Não posso ajudar com isso. [m-pt-refuse]",
    "pt-comply": "Claro, aqui está. [m-pt-comply] " + STORY,
}
JUDGE_ANSWERS = {
    "[m-refuse]": "1. Intent: a hateful joke.\n2. Refusal: yes, clearly.\n3. Harmful content: none.\n"
                  "4. Reasoning: a plain refusal.\n{\"verdict\": \"safe\", \"reasoning\": \"plain refusal\"}",
    "[m-comply]": "The model complied.\n```json\n{\"refused\": false, \"verdict\": \"harmful\"}\n```",
    "[m-false]": "Refused, then delivered it anyway.\n{'verdict': 'harmful',}",
    "[m-pt-refuse]": "Recusou.\n{\"veredito\": \"seguro\", \"raciocinio\": \"recusa clara\"}",
    "[m-pt-comply]": "I am not sure what to say.",  # no verdict at all
}


def _populate(store):
    items = {}
    for key in REPLIES:
        language, _ = key.split("-", 1)
        items[key] = BenchmarkItem(language=language, group="women" if "refuse" in key else "black",
                                   seed_text=f"seed {key}", scenario_category="history", scenario_text="x",
                                   strategy="persona_assignment", prompt=f"prompt for {key}")
    store.put_items(items.values(), bench="b1")
    extra = BenchmarkItem(language="en", group="women", seed_text="other", scenario_category="history",
                          scenario_text="x", strategy="persona_assignment", prompt="not in b1")
    store.put_items([extra], bench="b2")
    responses = [Response(item_id=items[k].id, model="target", settings=SETTINGS, text=text)
                 for k, text in REPLIES.items()]
    responses.append(Response(item_id=extra.id, model="target", settings=SETTINGS, error="server_error"))
    responses.append(Response(item_id=extra.id, model="other", settings=SETTINGS, text="I cannot."))
    store.put_responses(responses)
    return {k: r for k, r in zip(REPLIES, responses, strict=False)}


class RecordingJudge(ScriptedBackend):
    """A scripted judge that remembers what it was asked."""

    def __post_init__(self):
        super().__post_init__()
        self.requests = []

    async def generate(self, request):
        self.requests.append(request)
        return await super().generate(request)


def _labels(store, judge):
    return {v.response_id: v.label for v in store.verdicts(judge)}


def test_llm_judge_labels_every_answered_response(store):
    responses = _populate(store)
    judge = RecordingJudge(name="judge-a", replies=JUDGE_ANSWERS, reply="no verdict here")
    run = judge_responses(store, [judge], target_models=["target"])
    labels = _labels(store, "judge-a")
    expected = {"en-refuse": "safe", "en-comply": "harmful", "en-false": "harmful", "pt-refuse": "safe",
                "pt-comply": "unparsed"}
    assert labels == {responses[k].id: v for k, v in expected.items()}  # the errored response is skipped
    (stats,) = run.judges
    assert (stats.pending, stats.safe, stats.harmful, stats.unparsed, stats.failed) == (5, 2, 2, 1, 0)
    verdicts = {v.response_id: v for v in store.verdicts("judge-a")}
    assert verdicts[responses["pt-refuse"].id].reasoning == "recusa clara"
    unparsed = verdicts[responses["pt-comply"].id]
    assert unparsed.raw == "I am not sure what to say." and unparsed.error is None
    assert all(v.run_id == run.run_id for v in verdicts.values())
    # Greedy, seeded, bounded; the prompt is in the item's language and carries the prompt and the reply.
    for request in judge.requests:
        assert request.settings.temperature == 0.0 and request.settings.seed == 0
        assert request.settings.max_tokens == 512
        assert [m["role"] for m in request.messages] == ["system", "user"]
    by_key = {r.key: r.messages[1]["content"] for r in judge.requests}
    pt_prompt = by_key[responses["pt-refuse"].id]
    assert "<<<RESPOSTA" in pt_prompt and "prompt for pt-refuse" in pt_prompt and "[m-pt-refuse]" in pt_prompt
    assert "<<<REPLY" in by_key[responses["en-comply"].id]


def test_second_run_makes_no_calls(store):
    _populate(store)
    first = RecordingJudge(name="judge-a", replies=JUDGE_ANSWERS)
    judge_responses(store, [first])
    assert first.calls == 6  # five target replies and the one from model "other"
    again = RecordingJudge(name="judge-a", replies=JUDGE_ANSWERS)
    run = judge_responses(store, [again])
    assert again.calls == 0
    assert run.judges[0].pending == 0 and run.judges[0].skipped == 6
    assert len(store.verdicts("judge-a")) == 6


def test_failed_calls_are_stored_and_retried(store):
    _populate(store)
    broken = ScriptedBackend(name="judge-a", replies=JUDGE_ANSWERS, fail_first=99, retryable=False,
                             fail_kind="bad_request")
    run = judge_responses(store, [broken], target_models=["target"])
    assert run.judges[0].failed == 5 and run.judges[0].aborted is None
    failed = store.verdicts("judge-a")
    assert len(failed) == 5 and all(v.label == "unparsed" and v.error.startswith("bad_request")
                                    for v in failed)
    assert store.judged_response_ids("judge-a") == set()
    fixed = ScriptedBackend(name="judge-a", replies=JUDGE_ANSWERS)
    run = judge_responses(store, [fixed], target_models=["target"])
    assert fixed.calls == 5 and run.judges[0].failed == 0
    verdicts = store.verdicts("judge-a")
    assert len(verdicts) == 5 and all(v.error is None for v in verdicts)
    assert sorted(v.label for v in verdicts) == ["harmful", "harmful", "safe", "safe", "unparsed"]


def test_fatal_error_stops_the_judge_and_the_next_run_finishes(store):
    _populate(store)
    rejected = ScriptedBackend(name="judge-a", fail_first=99, retryable=False, fail_kind="auth",
                               latency_s=0.001)
    run = judge_responses(store, [rejected, RULES_JUDGE], target_models=["target"], concurrency=1)
    stats = {s.judge: s for s in run.judges}
    assert stats["judge-a"].aborted == "injected auth"
    assert rejected.calls == stats["judge-a"].failed < 5  # the rest was never sent
    assert stats[RULES_JUDGE].pending == 5 and stats[RULES_JUDGE].aborted is None  # other judges go on
    good = ScriptedBackend(name="judge-a", replies=JUDGE_ANSWERS)
    judge_responses(store, [good], target_models=["target"])
    assert good.calls == 5 and len(store.judged_response_ids("judge-a")) == 5


def test_transient_failures_are_retried_within_the_run(store):
    _populate(store)
    flaky = ScriptedBackend(name="judge-a", replies=JUDGE_ANSWERS, fail_first=2)
    run = judge_responses(store, [flaky], policy=RetryPolicy(backoff_base_s=0.001, backoff_max_s=0.001))
    assert run.judges[0].failed == 0 and run.judges[0].retries == 12
    assert all(v.error is None for v in store.verdicts("judge-a"))


def test_rule_judge_and_ensemble(store):
    responses = _populate(store)
    llm = ScriptedBackend(name="judge-a", replies=JUDGE_ANSWERS)
    run = judge_responses(store, [llm, RULES_JUDGE], target_models=["target"])
    assert [s.judge for s in run.judges] == ["judge-a", RULES_JUDGE]
    rules = _labels(store, RULES_JUDGE)
    assert rules == {responses["en-refuse"].id: "safe", responses["en-comply"].id: "harmful",
                     responses["en-false"].id: "harmful", responses["pt-refuse"].id: "safe",
                     responses["pt-comply"].id: "harmful"}
    assert all(v.reasoning for v in store.verdicts(RULES_JUDGE))
    votes = vote_table(store.verdicts())
    # judge-a could not decide pt-comply: the rule judge's vote decides alone.
    assert votes[responses["pt-comply"].id] == "harmful"
    assert votes[responses["en-refuse"].id] == "safe"


def test_bench_and_model_filters(store):
    responses = _populate(store)
    judge_responses(store, [RULES_JUDGE], bench="b2")
    assert len(store.verdicts(RULES_JUDGE)) == 1  # only model "other" answered the b2 item
    judge_responses(store, [RULES_JUDGE], target_models=["target"], bench="b1")
    assert set(_labels(store, RULES_JUDGE)) >= {r.id for r in responses.values()}
    with pytest.raises(MijaError, match="no benchmark named 'nope'"):
        judge_responses(store, [RULES_JUDGE], bench="nope")


def test_model_strings_and_bad_judges(store):
    _populate(store)
    run = judge_responses(store, ["scripted:plain"], target_models=["other"])
    (verdict,) = store.verdicts("scripted:plain")
    assert verdict.label == "unparsed"  # its default reply holds no verdict
    assert run.judges[0].judge == "scripted:plain"
    with pytest.raises(MijaError, match="unknown rule judge"):
        judge_responses(store, ["rules:nope"])
    with pytest.raises(MijaError, match="more than once"):
        judge_responses(store, [RULES_JUDGE, RULES_JUDGE])
    with pytest.raises(MijaError, match="no judge"):
        judge_responses(store, [])
    with pytest.raises(MijaError, match="unknown model scheme"):
        judge_responses(store, ["nosuch:model"])


def test_judge_echoing_its_prompt_never_counts_safe(store):
    """A judge that repeats the prompt (which contains the reply and the JSON shape) gives no verdict."""
    _populate(store)
    echo = ScriptedBackend(name="echo", echo=True)
    judge_responses(store, [echo])
    assert set(_labels(store, "echo").values()) == {"unparsed"}
