"""The report's example picker: its shortcut keeps every row it could choose."""

import numpy as np

from mijabench.report import context


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
