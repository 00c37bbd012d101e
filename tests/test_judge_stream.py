"""The judge run reads the responses still to judge in batches from SQLite, so memory stays flat in corpus
size: every pending response comes out once, judged ones never, across batch boundaries."""

from cli_inproc import make_items
from mijabench.judge import RULES_JUDGE, judge_responses, runner
from mijabench.records import Response, SamplingSettings, Verdict

SETTINGS = SamplingSettings().to_dict()


def _corpus(store, n=23):
    items = make_items(n, groups=("women",))
    store.put_items(items, bench="b1")
    responses = [Response(item_id=it.id, model=m, settings=SETTINGS, text=f"reply {i} by {m}")
                 for i, it in enumerate(items) for m in ("a", "b")]
    responses.append(Response(item_id=items[0].id, model="c", settings=SETTINGS, error="server_error"))
    store.put_responses(responses)
    return responses[:-1]


def test_pending_responses_cross_batches_and_skip_judged_ones(store, monkeypatch):
    monkeypatch.setattr(runner, "SELECT_BATCH", 4)  # 46 responses: a dozen batches, the last one short
    responses = _corpus(store)
    judged = responses[::3]
    store.put_verdicts([Verdict(response_id=r.id, judge="j", label="safe", fingerprint="new")
                        for r in judged])
    store.put_verdicts([Verdict(response_id=r.id, judge="j", label="safe", fingerprint="old")
                        for r in responses[1:6:3]])  # two stale verdicts
    pending = [r.id for r, _ in runner.pending_responses(store, "j", "new")]
    assert pending == [r.id for r in responses if r not in judged]  # store order, each once
    kept = [r.id for r, _ in runner.pending_responses(store, "j", "new", keep_stale=True)]
    assert len(kept) == len(pending) - 2
    pairs = list(runner.pending_responses(store, "other", "fp", target_models=["b"]))
    assert [r.model for r, _ in pairs] == ["b"] * 23
    assert all(item.id == r.item_id for r, item in pairs)


def test_a_judge_run_reads_batches_not_the_whole_store(store, monkeypatch):
    monkeypatch.setattr(runner, "SELECT_BATCH", 5)
    responses = _corpus(store)
    reads = []
    query = store.query

    def counting(sql, args=()):
        rows = query(sql, args)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(store, "query", counting)
    run = judge_responses(store, [RULES_JUDGE])
    assert run.responses == len(responses) and run.judges[0].pending == len(responses)
    assert max(reads) <= 5  # no read returned more than one batch
    assert {v.response_id for v in store.verdicts(RULES_JUDGE)} == {r.id for r in responses}
    again = judge_responses(store, [RULES_JUDGE])
    assert again.judges[0].pending == 0 and again.judges[0].skipped == len(responses)
