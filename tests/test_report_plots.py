"""The report's plots drawn in two processes are the same PNGs, byte for byte, as drawn in one; a failed or
stuck forked process is stopped and its plots redrawn in this one; no fork while other threads run. And the
example picker's shortcut keeps every row it could choose."""

import contextlib
import os
import threading
import time

import numpy as np
import pytest

from mijabench.analysis import Frame, analyze, load_judged
from mijabench.report import context, drawing, plots
from mijabench.taxonomy import load_taxonomy
from test_analysis import put_rows


def _inputs(store):
    rows = [(model, lang, group, "persona_assignment", outcome, "")
            for model in ("m-a", "m-b") for lang, group in (("en", "women"), ("en", "black"), ("pt", "women"))
            for outcome in ("safe", "harmful", "safe")]
    put_rows(store, rows)
    analysis = analyze(load_judged(store), resamples=50, seed=0)
    dev = analysis["deviations"]
    groups = {lang: sorted(set(dev["group"][dev["language"] == lang].tolist())) for lang in ("en", "pt")}
    return analysis, ["m-a", "m-b"], groups, 0.1, [c.id for c in load_taxonomy().size_classes]


def test_two_processes_draw_the_same_pngs_and_a_failed_child_is_redrawn(store, monkeypatch):
    args = _inputs(store)
    serial = plots.all_plots(*args, workers=1)
    assert {"heatmap_en", "heatmap_pt", "strategy", "model_strategy", "scenario_category"} <= set(serial)
    assert all(png.startswith(b"\x89PNG") for png in serial.values())
    assert plots.all_plots(*args, workers=2) == serial
    parent, real = os.getpid(), plots.heatmap
    # a failure in a helper: its plots are drawn here instead (the failing helper's other plots too)

    def fails_in_child(*a, **k):
        if os.getpid() != parent:
            raise RuntimeError("drawing failed in the forked process")
        return real(*a, **k)

    monkeypatch.setattr(plots, "heatmap", fails_in_child)
    assert plots.all_plots(*args, workers=2) == serial
    monkeypatch.setattr(plots, "heatmap", real)
    monkeypatch.setattr(drawing, "CHILD_TIMEOUT_S", 0.0)  # a child that does not answer in time is stopped
    assert plots.all_plots(*args, workers=2) == serial


def test_no_fork_while_other_threads_run():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert plots.workers_available() == 1
    finally:
        stop.set()
        worker.join()


def _partner_of(pid: int, timeout: float = 30.0) -> int:
    """The process a helper forks once matplotlib is imported (Linux: /proc lists a task's children)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = [int(c) for c in fh.read().split()]
        if children:
            return children[0]
        time.sleep(0.02)
    raise AssertionError("the helper forked no partner")


def _ended(pid: int, timeout: float = 10.0) -> bool:
    """Whether a process that is not this one's child has ended (gone, or a zombie left to init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_a_cancelled_drawing_leaves_no_process_behind(store):
    started = plots.start_plots(*_inputs(store), workers=2)
    assert started.helper is not None  # one helper, which draws with a partner
    helper = started.helper.pid
    partner = _partner_of(helper)
    started.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(helper, os.WNOHANG)  # killed and reaped
    assert _ended(partner)  # the partner ends with its helper


def test_helpers_forked_before_the_analysis_draw_the_same_pngs(store, monkeypatch):
    # as on a two-CPU machine with no other thread (earlier tests in the same process may leave one behind)
    monkeypatch.setattr(drawing, "workers_available", lambda: 2)
    args = _inputs(store)
    serial = plots.all_plots(*args, workers=1)
    helper = plots.fork_helper()
    assert helper is not None
    partner = _partner_of(helper.pid)
    started = plots.start_plots(*args, helper=helper)
    assert started.helper is helper  # this process draws nothing while the helper does
    assert started.finish() == serial
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)  # reaped by finish
    assert _ended(partner)
    unused = plots.fork_helper()  # a report that fails before its plots: stopped and reaped
    unused.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(unused.pid, os.WNOHANG)


def test_jobs_cross_the_pipe_unchanged():
    frame = Frame({"model": np.array(["a", "b$", None], dtype=object), "rate": np.array([0.1, np.nan, 1 / 3]),
                   "n": np.array([1, 2, 2**40]), "significant": np.array([True, False, True])}, "t")
    jobs = [("heatmap_en", 12.5, "heatmap", (frame, "en", ["m"], ["g1", "g2"], 0.07)),
            ("strategy", 3.0, "rate_bars", (frame, "model", "title", True))]
    back = drawing.decode_jobs(drawing.encode_jobs(jobs))
    assert [(n, c, f, a[1:]) for n, c, f, a in back] == [(n, c, f, a[1:]) for n, c, f, a in jobs]
    for *_, args in back:
        assert args[0].name == "t" and args[0].names == frame.names
        for name in frame.names:
            assert args[0][name].dtype == frame[name].dtype
            assert np.array_equal(args[0][name], frame[name], equal_nan=frame[name].dtype != object)
    with pytest.raises(ValueError, match="no plot function"):
        plots._draw("__import__", ("os",))


def test_example_candidates_hold_every_groups_lowest_noise_rows():
    """pick_examples sorts only the rows ``_lowest_noise`` keeps: each (cell, kind) group's ``per_cell``
    lowest noise values must be among them, also in groups too small to reach the threshold."""
    rng = np.random.default_rng(3)
    n, per_cell = 60_000, 2
    cell = np.r_[rng.integers(0, 100, n - 3), [999, 999, 998]]  # two tiny cells
    kind = rng.integers(0, 2, n)
    noise = rng.random(n)
    judged = np.arange(n) + 10
    kept, kept_cell, kept_kind, kept_noise = context._lowest_noise(judged, cell, kind, noise, per_cell)
    assert len(kept) < n // 10  # the point: few rows left to sort
    assert np.array_equal(judged[np.isin(judged, kept)], kept)  # a subset, in the same order
    assert np.array_equal(kept_noise, noise[kept - 10]) and np.array_equal(kept_cell, cell[kept - 10])
    for key in np.unique(cell * 2 + kind):
        rows = np.flatnonzero(cell * 2 + kind == key)
        lowest = rows[np.argsort(noise[rows])[:per_cell]] + 10
        assert np.isin(lowest, kept).all()


def test_helpers_with_plots_larger_than_a_pipe_both_answer(monkeypatch):
    """Each process writes its PNGs only when all are drawn, and a pipe holds 64 KiB: the partner must not
    keep its helper's pipes to the report open, and the helper reads its partner's plots before it writes
    its own (else each would wait for the other)."""
    parent = os.getpid()

    def large(func, args):  # 1 MiB per plot, marked with the process that drew it
        time.sleep(0.5)  # long enough that the partner takes some of the plots from the queue
        return f"{os.getpid()} {func} {args[0]}".encode().ljust(1 << 20, b".")

    monkeypatch.setattr(drawing, "CHILD_TIMEOUT_S", 60.0)  # a deadlock ends here, redrawn in this process
    jobs = [(f"plot{i}", 10.0 - i, "large", (i,)) for i in range(4)]
    started = drawing.Drawing(jobs, large, drawing.fork_helper(large, 2))
    drawn = started.finish()
    assert list(drawn) == [name for name, *_ in jobs]
    makers = {name: int(png.split()[0]) for name, png in drawn.items()}
    assert parent not in makers.values() and len(set(makers.values())) == 2
    assert all(len(png) == 1 << 20 for png in drawn.values())


def test_a_report_that_fails_before_its_plots_leaves_no_helper_behind(store, tmp_path, monkeypatch):
    from mijabench.errors import MijaError
    from mijabench.report import write_report

    # the helper is forked first (as on a two-CPU machine with no other thread), then the store fails
    monkeypatch.setattr(drawing, "workers_available", lambda: 2)
    forked = []
    real_fork = drawing.Helper.fork
    monkeypatch.setattr(drawing.Helper, "fork",
                        lambda *a, **k: forked.append(real_fork(*a, **k)) or forked[-1])
    with pytest.raises(MijaError, match="nothing to report"):
        write_report(store, tmp_path / "out")
    assert len(forked) == 1 and all(forked)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left, running or unreaped


def test_a_helper_never_closes_a_pipe_twice(store, tmp_path):
    """After its jobs are sent the job pipe is closed; cancelling the drawing then must not close that
    descriptor number again (by then it may be another file's)."""
    started = plots.start_plots(*_inputs(store), workers=2)
    others = [open(tmp_path / f"other{i}", "wb") for i in range(8)]  # noqa: SIM115 (take the freed numbers)
    try:
        started.cancel()
        for other in others:
            other.write(b"still open")
            other.flush()
    finally:
        for other in others:
            with contextlib.suppress(OSError):
                other.close()
    assert all((tmp_path / f"other{i}").read_bytes() == b"still open" for i in range(8))


def test_the_plotted_tables_are_handed_over_before_the_tests_and_are_the_final_ones(store):
    _inputs(store)
    table = load_judged(store)
    seen = []
    analysis = analyze(table, resamples=50, seed=0, plot_tables=seen.append)
    assert len(seen) == 1
    early = seen[0]
    assert {"by_model", "by_strategy", "by_model_strategy", "by_scenario_category", "deviations", "disparity",
            "scaling"} <= set(early)
    assert "pairwise_tests" not in early and "paired" not in early  # handed over before the tests
    for name, frame in early.items():
        assert frame is analysis.tables[name]
    plain = analyze(table, resamples=50, seed=0)
    assert list(plain.tables) == list(analysis.tables)  # the tables' order does not move
    for name, frame in plain.tables.items():
        other = analysis.tables[name]
        assert frame.names == other.names
        for col in frame.names:
            assert np.array_equal(frame[col], other[col], equal_nan=frame[col].dtype != object), (name, col)


def test_a_failed_partner_is_redrawn_by_its_helper(monkeypatch):
    """The partner's plots, when it fails, are drawn by the helper that forked it, not left to the report."""
    parent = os.getpid()

    def marked(func, args):  # fails in the partner (a grandchild of this process), marks who drew it
        if os.getpid() != parent and os.getppid() != parent:
            raise RuntimeError("drawing failed in the partner")
        return f"{os.getpid()} {args[0]}".encode()

    jobs = [(f"plot{i}", 10.0 - i, "marked", (i,)) for i in range(4)]
    drawn = drawing.Drawing(jobs, marked, drawing.fork_helper(marked, 2)).finish()
    assert list(drawn) == [name for name, *_ in jobs]
    makers = {int(png.split()[0]) for png in drawn.values()}
    assert len(makers) == 1 and parent not in makers  # all by the helper


def test_a_helper_forked_at_start_up_draws_the_report_plots(store, monkeypatch):
    """`mijabench report` forks its helper before the libraries are imported (``drawing.prefork``): the
    drawing module loads none of them, the report takes that helper, and its plots are the same PNGs."""
    import subprocess
    import sys

    heavy = "('numpy', 'scipy', 'pyarrow', 'matplotlib', 'mijabench.judge.runner')"
    code = ("import sys; from mijabench.report import drawing; "
            f"print(sorted(m for m in {heavy} if m in sys.modules)); "
            # what the helper imports besides matplotlib: no interval code (scipy), no judge runner
            "import mijabench.report.plots; import mijabench.judge as j; "
            f"print(sorted(m for m in {heavy} if m in sys.modules)); "
            "print(sorted(j.__all__) == sorted(j._HOME) and all(getattr(j, n) for n in j.__all__))")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    assert lines[:3] == ["[]", "['numpy', 'pyarrow']", "True"]
    monkeypatch.setattr(drawing, "workers_available", lambda: 2)
    args = _inputs(store)
    serial = plots.all_plots(*args, workers=1)
    drawing.prefork()
    helper = drawing._preforked
    assert helper is not None
    partner = _partner_of(helper.pid)
    assert plots.fork_helper() is helper  # handed to the report, once
    assert drawing._preforked is None
    assert plots.start_plots(*args, helper=helper).finish() == serial
    assert _ended(partner)
    drawing.prefork()  # one the command never uses is stopped and reaped (at exit)
    unused = drawing._preforked
    drawing.cancel_preforked()
    with pytest.raises(ChildProcessError):
        os.waitpid(unused.pid, os.WNOHANG)
