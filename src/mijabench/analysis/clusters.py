"""Clusters of responses that share a prompt: every model answers the same items, and counterfactual twins
(the same attack aimed at each group, linked by ``pair_id``) share a seed. Responses in one cluster are not
independent, so intervals of cells that pool several of them use an effective sample size (see
``intervals.effective_counts``).

Cluster of a row: its counterfactual family when it has a ``pair_id``, else its item, else the row itself
(tables built without item ids).
"""

from __future__ import annotations

import numpy as np

from .table import ST_HARMFUL, ST_SAFE, JudgedTable


def cluster_codes(table: JudgedTable) -> np.ndarray:
    """int64 cluster number per row."""
    n = len(table)
    pair, item = table.cat("pair_id"), table.cat("item_id")
    pair_empty = pair.categories.index("") if "" in pair.categories else -1
    item_empty = item.categories.index("") if "" in item.categories else -1
    n_pair, n_item = len(pair.categories), len(item.categories)
    codes = np.where(item.codes == item_empty, n_pair + n_item + np.arange(n), n_pair + item.codes)
    return np.where(pair.codes == pair_empty, codes, pair.codes).astype(np.int64)


def cell_clusters(cell: np.ndarray, cluster: np.ndarray, status: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Judged rows summed per (cell, cluster): (cell, cluster, safe count, judged count) per pair that
    occurs. ``cell`` is -1 for rows outside the table."""
    judged = (cell >= 0) & ((status == ST_SAFE) | (status == ST_HARMFUL))
    c, k = cell[judged], cluster[judged]
    safe = (status[judged] == ST_SAFE).astype(np.float64)
    span = int(k.max()) + 1 if len(k) else 1
    pairs, inverse = np.unique(c * span + k, return_inverse=True)
    return (pairs // span, pairs % span, np.bincount(inverse, safe, len(pairs)),
            np.bincount(inverse, minlength=len(pairs)).astype(np.float64))
