"""Ids hashed on two cores (sources/digests.py): the forked half must give the same ids as hashing here, and
every way the child can fail must fall back to hashing here, never to wrong or missing ids."""

from __future__ import annotations

import os

import pytest

from mijabench.records import Response, Verdict
from mijabench.sources import digests
from mijabench.sources.corpus import IMPORT_SETTINGS, RecordIds

CAN_FORK = digests._can_fork  # before any test replaces it
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

ITEMS = [f"{k * 7919:016x}" for k in range(301)]  # an odd count: the halves differ in size
MODELS = ["qwen_7b", "modelo \"citado\" ção/ü", "llama"] * 100 + ["llama"]


def record_ids() -> tuple[list[str], list[str]]:
    """The ids the records give themselves (``stable_id`` of their canonical JSON), one by one."""
    responses = [Response(item_id=i, model=m, settings=IMPORT_SETTINGS, text="x").id
                 for i, m in zip(ITEMS, MODELS, strict=True)]
    return responses, [Verdict(response_id=r, judge="paper:gpt", label="safe").id for r in responses]


@pytest.fixture
def forks(monkeypatch):
    """Every call hashes in halves, and the forks are counted."""
    monkeypatch.setattr(digests, "FORK_MIN", 2)
    monkeypatch.setattr(digests, "_can_fork", lambda: True)
    count = []
    real = os.fork

    def fork():
        count.append(1)
        return real()
    monkeypatch.setattr(os, "fork", fork)
    return count


def test_forked_halves_give_the_records_ids(forks):
    responses, verdicts = record_ids()
    ids = RecordIds()
    assert ids.responses(ITEMS, MODELS) == responses
    keys = ids.verdict_keys(responses, "paper:gpt")
    assert keys.dtype == "S16" and keys.astype(str).tolist() == verdicts
    assert len(forks) == 2


def test_small_columns_are_hashed_here(monkeypatch):
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked for a few ids"))
    responses, _ = record_ids()
    assert RecordIds().responses(ITEMS, MODELS) == responses


def parts(fail_in_child):
    """A ``part`` for ``hex_ids`` of the response ids that misbehaves when run in a forked child."""
    parent = os.getpid()
    ids = RecordIds()

    def part(lo: int, hi: int) -> bytes:
        whole = bytes.fromhex("".join(ids.response(i, m) for i, m in zip(ITEMS[lo:hi], MODELS[lo:hi],
                                                                            strict=True)))
        if os.getpid() != parent:
            return fail_in_child(whole)
        return whole
    return part


def raise_error(whole: bytes) -> bytes:
    raise RuntimeError("the child fails")


def exit_early(whole: bytes) -> bytes:
    os._exit(0)  # a clean exit that wrote nothing


def kill_itself(whole: bytes) -> bytes:
    os.kill(os.getpid(), 9)
    return whole


@pytest.mark.parametrize("fail", [raise_error, exit_early, kill_itself, lambda whole: whole[:-3],
                                  lambda whole: whole + b"x" * 8],
                         ids=["raises", "exits-silently", "killed", "short", "long"])
def test_a_failing_child_costs_time_not_ids(forks, fail):
    responses, _ = record_ids()
    got = digests.hex_ids(parts(fail), len(ITEMS)).astype(str).tolist()
    assert got == responses
    assert len(forks) == 1


def test_no_fork_hashes_here(monkeypatch):
    monkeypatch.setattr(digests, "FORK_MIN", 2)
    monkeypatch.delattr(os, "fork")
    responses, _ = record_ids()
    assert RecordIds().responses(ITEMS, MODELS) == responses


def test_mismatched_columns_are_refused():
    with pytest.raises(ValueError):
        RecordIds().responses(ITEMS, MODELS[:-1])


def test_no_fork_while_another_thread_runs(monkeypatch):
    """A thread holding a lock at the fork would leave it held in the child: with another thread running,
    everything is hashed here."""
    import threading

    monkeypatch.setattr(digests, "FORK_MIN", 2)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked beside another thread"))
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        responses, _ = record_ids()
        assert RecordIds().responses(ITEMS, MODELS) == responses
    finally:
        release.set()
        other.join()


def test_the_builtin_sha256_is_sha256():
    import hashlib

    for data in (b"", b"x", b"[\"verdict\",\"0123456789abcdef\",\"gpt\"]", bytes(range(256)) * 9):
        assert digests.sha256(data).digest() == hashlib.sha256(data).digest()


def test_a_deferred_computation_runs_in_a_child_and_comes_back_whole(forks):
    """The verdict ids are hashed in a child while the import writes: its arrays come back as they were
    made, and the child hashes alone (no halves of its own: the parent has the other core)."""
    import numpy as np

    made_here = []

    def compute():
        made_here.append(os.getpid())
        ids = np.array([b"0123456789abcdef", b"fedcba9876543210"], dtype="S16")
        return ids, np.array([1, 0], dtype=np.int64), np.array([digests._IN_CHILD])

    parent = os.getpid()
    deferred = digests.Deferred(compute, arrays=3, size=10)
    ids, order, in_child = deferred.result()
    assert len(forks) == 1 and made_here == []  # computed in the child only
    assert ids.dtype == "S16" and ids.tolist() == [b"0123456789abcdef", b"fedcba9876543210"]
    assert order.tolist() == [1, 0] and in_child.tolist() == [True]
    assert deferred.result() is deferred.result() and os.getpid() == parent


@pytest.mark.parametrize("fail", ["raise", "kill", "exit"])
def test_a_deferred_computation_whose_child_fails_is_made_here(forks, fail):
    import numpy as np

    parent = os.getpid()

    def compute():
        if os.getpid() != parent:
            if fail == "raise":
                raise RuntimeError("the child fails")
            if fail == "kill":
                os.kill(os.getpid(), 9)
            os._exit(0)  # leaves nothing in the file
        return (np.arange(5),)

    assert digests.Deferred(compute, arrays=1, size=10).result()[0].tolist() == [0, 1, 2, 3, 4]
    assert len(forks) == 1


def test_small_deferred_computations_are_made_here_when_asked(monkeypatch):
    import numpy as np

    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked for a few ids"))
    calls = []
    deferred = digests.Deferred(lambda: calls.append(1) or (np.zeros(2),), arrays=1,
                                size=digests.FORK_MIN - 1)
    assert calls == []  # nothing until the result is needed
    assert deferred.result()[0].tolist() == [0.0, 0.0] and calls == [1]


def test_an_import_with_its_verdict_ids_hashed_in_a_child_stores_the_same(forks, tmp_path, monkeypatch):
    """The whole column import with every hash forked (the halves and the deferred verdict ids) against the
    row reader: the same store, row for row."""
    from test_import_columns import both_readers, tricky_rows, write

    path = write(tricky_rows(), tmp_path / "corpus.parquet")
    _, _, used = both_readers(path, tmp_path, monkeypatch, twice=True)
    assert used == [True, True]
    assert len(forks) == 2 * 2  # each column import: the response ids in halves, then the verdict ids


def test_a_deferred_child_does_not_fork_halves_of_its_own(monkeypatch):
    monkeypatch.setattr(digests, "_IN_CHILD", True)
    assert CAN_FORK() is False
