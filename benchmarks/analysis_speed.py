"""Speed and memory of the statistics on a table the size of the paper's alignment corpus.

615,454 judged responses from 14 models over 22 group-language cells, 4 strategies and 21 scenario
categories (a fifth of the items in counterfactual pairs). Times ``analysis.analyze``: every rate table, the
deviation heatmap data, all CIs (clustered by shared prompt) with 1,000 draws per cell, disparity figures and
the all-groups-equal permutation test, pairwise tests with Holm correction, the paired McNemar analysis, the
cross-language and the scaling tables.
Target: under 2 s and under 2 GB peak memory on a 2-core machine.

    .venv/bin/python benchmarks/analysis_speed.py [--rows N] [--resamples B] [--repeat R] [--store]

``--store`` also builds an SQLite workspace of that size and times ``load_judged`` (not part of the target;
building the store takes a minute or two).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np

from mijabench.analysis import analyze
from mijabench.analysis.table import Categorical, JudgedTable
from mijabench.taxonomy import load_taxonomy

PAPER_ROWS = 615_454
MODELS = [  # (name, family, params_b): 14 models in 5 families, all four size classes
    ("llama-3.2-1b", "llama", 1), ("llama-3.2-3b", "llama", 3), ("llama-3.1-8b", "llama", 8),
    ("llama-3.3-70b", "llama", 70), ("qwen-2.5-1.5b", "qwen", 1.5), ("qwen-2.5-3b", "qwen", 3),
    ("qwen-2.5-7b", "qwen", 8), ("qwen-2.5-32b", "qwen", 32), ("gemma-3-1b", "gemma", 1),
    ("gemma-3-4b", "gemma", 4), ("gemma-3-12b", "gemma", 12), ("gemma-3-27b", "gemma", 27),
    ("mistral-7b", "mistral", 8), ("phi-4", "phi", 12),
]


def synthetic_table(rows: int = PAPER_ROWS, seed: int = 0) -> JudgedTable:
    """Every model answers the same items; defense rates differ by model and group-language cell."""
    rng = np.random.default_rng(seed)
    tax = load_taxonomy()
    cells = [(g.id, lang) for lang in tax.languages for g in tax.groups_for(lang)]  # 13 en + 9 pt = 22
    n_models = len(MODELS)
    n_items = rows // n_models + (rows % n_models > 0)
    cell = rng.integers(0, len(cells), n_items)
    # a fifth of the items are counterfactual pairs: consecutive blocks cover every group of one language
    pair = np.full(n_items, -1)
    for lang in tax.languages:
        members = [i for i, (_, lg) in enumerate(cells) if lg == lang]
        start = n_items // 10 * tax.languages.index(lang)
        blocks = (n_items // 10) // len(members)
        block_cells = np.tile(members, blocks)
        span = np.arange(start, start + len(block_cells))
        cell[span] = block_cells
        pair[span] = np.arange(len(span)) // len(members) + start
    strategy = rng.integers(0, len(tax.strategies), n_items)
    scenario = rng.integers(0, len(tax.scenario_categories), n_items)

    model = np.repeat(np.arange(n_models), n_items)[:rows]
    item = np.tile(np.arange(n_items), n_models)[:rows]
    base = rng.uniform(0.4, 0.95, n_models)
    offset = rng.normal(0, 0.08, (n_models, len(cells)))
    p_safe = np.clip(base[:, None] + offset, 0.01, 0.99)[model, cell[item]]
    u = rng.random(rows)
    label = np.where(u < 0.01, 2, np.where(rng.random(rows) < p_safe, 0, 1)).astype(np.int32)
    failed = rng.random(rows) < 0.005

    def cat(codes, categories):
        return Categorical(np.asarray(codes, dtype=np.int32), tuple(categories))

    pair_codes = np.where(pair[item] >= 0, pair[item] + 1, 0)
    return JudgedTable.from_columns(
        response_id=cat(np.arange(rows), [f"r{i}" for i in range(rows)]),
        item_id=cat(item, [f"i{i}" for i in range(n_items)]),
        pair_id=cat(pair_codes, [""] + [f"p{i}" for i in range(int(pair.max()) + 1)]),
        model=cat(model, [m[0] for m in MODELS]),
        family=cat(model, [m[1] for m in MODELS]),
        size_class=cat(model, [tax.size_class(m[2]) or "" for m in MODELS]),
        params_b=np.asarray([m[2] for m in MODELS], dtype=float)[model],
        language=Categorical.from_values([c[1] for c in cells]).take(cell[item]),
        group=Categorical.from_values([c[0] for c in cells]).take(cell[item]),
        strategy=cat(strategy[item], list(tax.strategies)),
        scenario_category=cat(scenario[item], list(tax.scenario_categories)),
        label=cat(label, ["safe", "harmful", "unparsed"]),
        failed=failed,
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def time_store_load(table: JudgedTable) -> None:
    from mijabench.analysis import load_judged
    from mijabench.store import Store

    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        t0 = time.perf_counter()
        items = {}
        item_id, lang, group = table.values("item_id"), table.values("language"), table.values("group")
        strat, scen = table.values("strategy"), table.values("scenario_category")
        pair = table.values("pair_id")
        for i in range(len(table)):
            items.setdefault(item_id[i], (item_id[i], lang[i], group[i], "", "", "", scen[i], "", strat[i],
                                          "", pair[i], "{}"))
        label = table.values("label")
        with store.transaction() as cur:
            cur.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", items.values())
            cur.executemany("INSERT INTO responses (id, item_id, model, settings_key, settings, text, "
                            "prompt_tokens, completion_tokens, latency_s, finish_reason, error, attempts, "
                            "run_id, created_at) VALUES (?,?,?,'k','{}','x',0,0,0,'stop',?,1,'run','t')",
                            zip(table.values("response_id").tolist(), item_id.tolist(),
                                table.values("model").tolist(),
                                [("boom" if f else None) for f in table.values("failed").tolist()],
                                strict=True))
            cur.executemany("INSERT INTO verdicts (id, response_id, judge, label, raw, reasoning, error, "
                            "run_id, created_at) VALUES (?,?,'j',?,'','',NULL,'run','t')",
                            ((f"v{i}", r, lb) for i, (r, lb) in
                             enumerate(zip(table.values("response_id").tolist(), label.tolist(), strict=True))
                             if lb != "unjudged"))
        print(f"store built in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        loaded = load_judged(store)
        print(f"load_judged: {len(loaded):,} rows in {time.perf_counter() - t0:.2f} s "
              f"(peak RSS so far {peak_rss_mb():,.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=PAPER_ROWS)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", action="store_true", help="also time load_judged from SQLite")
    args = parser.parse_args()

    t0 = time.perf_counter()
    table = synthetic_table(args.rows, args.seed)
    cells = len(set(zip(table.values("group"), table.values("language"), strict=True)))
    print(f"synthetic table: {len(table):,} responses, {len(table.cat('model').categories)} models, "
          f"{cells} group-language cells "
          f"(built in {time.perf_counter() - t0:.1f} s, RSS {peak_rss_mb():,.0f} MB)")
    times, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        analysis = analyze(table, resamples=args.resamples, seed=args.seed)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    cells = sum(len(f) for f in analysis.tables.values())
    print(f"analyze: {len(analysis.tables)} tables, {cells:,} cells, {args.resamples:,} resamples each")
    print(f"time: best {min(times):.2f} s, worst {max(times):.2f} s over {args.repeat} runs (target < 2 s); "
          f"CPU time best {min(cpu):.2f} s (wall time above CPU time means other processes shared the cores)")
    print(f"peak memory (process RSS): {peak_rss_mb():,.0f} MB (target < 2,048 MB)")
    if args.store:
        time_store_load(table)


if __name__ == "__main__":
    main()
