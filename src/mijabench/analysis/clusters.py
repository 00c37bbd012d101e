"""Clusters of responses that share a prompt: every model answers the same items, and counterfactual twins
(the same attack aimed at each group, linked by ``pair_id``) share a seed. Responses in one cluster are not
independent, so intervals of cells that pool several of them use an effective sample size (see
``intervals.effective_counts``).

Cluster of a row: its counterfactual family when it has a ``pair_id``, else its item, else the row itself
(tables built without item ids).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ClusterIndex:
    """The judged rows of a table sorted by cluster, computed once and shared by every table of an analysis:
    grouping a table's rows by (cluster, cell) then only sorts within clusters' runs."""

    order: np.ndarray  # judged rows, by cluster
    rank: np.ndarray  # dense cluster number of each of those rows, ascending
    safe: np.ndarray  # 1.0 where that row is safe

    @classmethod
    def of(cls, table: JudgedTable, clusters: np.ndarray | None = None) -> ClusterIndex:
        status = table.status
        judged = np.flatnonzero((status == ST_SAFE) | (status == ST_HARMFUL))
        codes = (cluster_codes(table) if clusters is None else clusters)[judged]
        by_cluster = np.argsort(codes, kind="stable")
        order = judged[by_cluster]
        sorted_codes = codes[by_cluster]
        rank = np.cumsum(np.r_[False, sorted_codes[1:] != sorted_codes[:-1]]) if len(order) else order
        return cls(order, rank.astype(np.int64), (status[order] == ST_SAFE).astype(np.float64))

    def cell_clusters(self, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Judged rows summed per (cell, cluster) that occurs: (cell, cluster rank, safe count, judged
        count), ordered by cluster, then cell. ``cell`` is per row of the table, -1 for rows outside it."""
        c = cell[self.order]
        rank, safe = self.rank, self.safe
        if len(c) and c.min() < 0:  # rows outside the table's mask (most tables have none: no copies then)
            inside = c >= 0
            c, rank, safe = c[inside], rank[inside], safe[inside]
        span = int(c.max()) + 1 if len(c) else 1
        key = rank * span + c
        # keys are already ordered by cluster, and often by cell within a cluster too (rows keep the table's
        # order there); a stable sort (timsort on integers) exploits those runs, and none is needed at all
        # when the keys are already in order
        if len(key) > 1 and not np.all(key[1:] >= key[:-1]):
            o = np.argsort(key, kind="stable")
            key, safe = key[o], safe[o]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
        if len(first) == len(key):  # every (cell, cluster) is one row (a cut by model: one answer per prompt)
            counts, safe_sum = np.ones(len(key)), safe.copy()
        else:
            counts = np.diff(np.r_[first, len(key)]).astype(np.float64)
            safe_sum = np.add.reduceat(safe, first) if len(first) else np.zeros(0)
        return key[first] % span, key[first] // span, safe_sum, counts
