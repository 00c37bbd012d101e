"""Ids hashed on two cores (sources/digests.py): the forked half must give the same ids as hashing here, and
every way the child can fail must fall back to hashing here, never to wrong or missing ids."""

from __future__ import annotations

import os

import pytest

from mijabench.records import Response, Verdict
from mijabench.sources import digests
from mijabench.sources.corpus import IMPORT_SETTINGS, RecordIds

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
    assert ids.verdicts(responses, "paper:gpt") == verdicts
    assert len(forks) == 2
    keys = ids.verdict_keys(responses, "paper:gpt")
    assert keys.dtype == "S16" and keys.astype(str).tolist() == verdicts


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
        RecordIds().response_keys(ITEMS, MODELS[:-1])


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
