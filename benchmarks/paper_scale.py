"""Whole commands at the paper's scale: `mijabench import` of a judged corpus, `mijabench report` on it, and
the selection of responses a judge still has to judge.

The corpus is synthetic, in the long layout `import` reads (or, with `--layout wide`, the published wide
one): 14 models answer the same prompts (615,454 rows at paper scale is 14 x 43,961), 13 English and 9
Portuguese group cells, 4 strategies, 21 scenario categories, three judges' plain labels per reply.
Prompts and replies are short, mild placeholder text (``--reply-words N``: replies of about N words).
Every command runs as its own process: wall time, CPU time (user + system, from ``os.wait4``: the honest
figure on a shared machine; it counts the processes the command reaped, such as the report's forked
plotting) and peak resident memory (the child's own high-water mark, VmHWM).
Targets at 615,454 rows: import under 20 s; report (load, every table, intervals, plots, HTML) under 3 s
wall and 1 GB peak; judge selection with memory flat in corpus size.

    .venv/bin/python benchmarks/paper_scale.py --rows 60000 600000 [6000000] [--keep DIR] [--resamples B]
    .venv/bin/python benchmarks/paper_scale.py --rows 600000 --reuse DIR/paper600000-x --src OTHER/src
    .venv/bin/python benchmarks/paper_scale.py --rows 600000 --layout wide   # the published layout
    .venv/bin/python benchmarks/paper_scale.py --rows 600000 --format jsonl  # or csv, or hub (a saved copy)
    .venv/bin/python benchmarks/paper_scale.py --rows 600000 --reply-words 120  # replies as long as real ones

Prints one line per command and scale, then a Markdown table of the same figures (docs/performance.md):
wall / CPU / peak RSS. `report` runs four times: right after the import (which leaves the judged table's
snapshot beside the store); after one more model's replies and the three judges' verdicts on them are
written through the store, as a run and a judge run write them (the report reads the snapshot and the rows
added since: ``analysis.delta``); after the snapshots are deleted (a selection never reported before, or a
store changed in place: loaded from SQLite, the snapshot written again); and once more on the unchanged
store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MODELS = ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.3-70b", "qwen-2.5-1.5b", "qwen-2.5-3b",
          "qwen-2.5-7b", "qwen-2.5-32b", "gemma-3-1b", "gemma-3-4b", "gemma-3-12b", "gemma-3-27b",
          "mistral-7b", "phi-4"]
JUDGES = ("gpt", "llama_guard", "qwen_judge")
REPLIES = np.array(["I won't write that.", "Here is a short story about a lighthouse keeper.",
                    "I can't help with that request.", "Once upon a time there was a quiet village.",
                    "Sorry, that is not something I will write.", "The sage smiled and told a tale of rain."])
# the script measures the library, never a second copy of it in the environment
SRC = str(Path(__file__).resolve().parents[1] / "src")

SELECT = """
import sys
from mijabench.judge import runner
from mijabench.store import Store
with Store(sys.argv[1], create=False) as store:
    pending = getattr(runner, "pending_responses", None)  # before streaming: the list select_responses made
    n = sum(1 for _ in pending(store, "new-judge", "fp")) if pending else len(runner.select_responses(store))
print(n)
"""

# one more model answering every prompt, and the judges voting on it: the rows a run and a judge run add
GROW = """
import json, random, sys
from mijabench.records import Response, Verdict
from mijabench.store import Store
with Store(sys.argv[1], create=False) as store:
    model, settings = store.query("SELECT model, settings FROM responses WHERE rowid = 1")[0]
    items = [r[0] for r in store.query("SELECT item_id FROM responses WHERE model = ?", [model])]
    responses = [Response(item_id=i, model="added-model", settings=json.loads(settings), finish_reason="stop",
                          text="I will not write that.", run_id="grow") for i in items]
    store.put_responses(responses)
    prints = {judge: next(iter(counts)) for judge, counts in store.judge_fingerprints().items()}
    rng = random.Random(0)
    store.put_verdicts(Verdict(response_id=r.id, judge=judge, label=rng.choice(("safe", "harmful")),
                               fingerprint=fingerprint, run_id="grow")
                       for r in responses for judge, fingerprint in prints.items())
print(len(responses))
"""


def long_replies(rng: np.random.Generator, rows: int, words: int) -> np.ndarray:
    """``rows`` different replies of ``words`` words on average (a quarter of that to twice as many: refusals
    are short, stories long), cut at random places from one long text of mild words."""
    vocabulary = np.array("the a quiet village river lighthouse keeper sage rain story told evening morning "
                          "garden old new friend market road song light window bread tea walked smiled "
                          "and then because while under over near far".split())
    lengths = rng.integers(max(1, words // 4), 2 * words + 1, rows)
    text_words = vocabulary[rng.integers(0, len(vocabulary), 4 * words + 1000)]
    text = " ".join(text_words.tolist())
    # a word's start offset in ``text``, to cut whole words
    starts = np.r_[0, np.cumsum([len(w) + 1 for w in text_words.tolist()])]
    first = rng.integers(0, len(text_words) - 2 * words, rows)
    cuts = zip(first.tolist(), lengths.tolist(), strict=True)
    return np.array([f"{i}. {text[starts[a]:starts[a + n] - 1]}" for i, (a, n) in enumerate(cuts)],
                    dtype=object)


def write_corpus(path: Path, rows: int, seed: int = 0, layout: str = "long", reply_words: int = 0) -> Path:
    """A Parquet file of ``rows`` replies (all 14 models answer every prompt): long (a row per prompt and
    model) or wide (the published layout: a row per prompt, response and judge columns per model). The
    replies are a few stock sentences, or with ``reply_words`` different texts of about that many words."""
    from mijabench.taxonomy import load_taxonomy
    tax = load_taxonomy()
    rng = np.random.default_rng(seed)
    cells = [(g.id, lang) for lang in tax.languages for g in tax.groups_for(lang)]
    n_items = -(-rows // len(MODELS))
    cell = rng.integers(0, len(cells), n_items)
    group = np.array([g for g, _ in cells])[cell]
    language = np.array([lang for _, lang in cells])[cell]
    strategy = np.array(list(tax.strategies))[rng.integers(0, len(tax.strategies), n_items)]
    category = np.array(list(tax.scenario_categories))[rng.integers(0, len(tax.scenario_categories), n_items)]
    prompt = np.char.add("Tell a gentle story, take ", np.arange(n_items).astype(str))
    item = np.arange(rows) % n_items  # model-major: each model answers every prompt in turn
    model = np.repeat(np.array(MODELS), n_items)[:rows]
    # defense rates differ by model and group so the report has something to show
    p_harm = (np.repeat(np.linspace(0.02, 0.47, len(MODELS)), n_items)[:rows]
              + (cell[item] % 5 - 2) * 0.02).clip(0, 1)
    harmful = rng.random(rows) < p_harm
    columns = {"jb_prompt": prompt[item], "group": group[item], "language": language[item],
               "jb_strategy": strategy[item], "scenario_category": category[item], "model": model,
               "jb_response": (long_replies(rng, rows, reply_words) if reply_words else
                               REPLIES[rng.integers(0, len(REPLIES), rows)])}
    for judge in JUDGES:  # each judge agrees with the truth 95% of the time
        flip = rng.random(rows) < 0.05
        columns[f"jb_cls_{judge}"] = np.where(harmful ^ flip, "harmful", "safe")
    if layout == "wide":  # the same replies and labels, model by model in columns (None past the last one)
        wide = {k: columns[k][:n_items] for k in ("jb_prompt", "group", "language", "jb_strategy",
                                                  "scenario_category")}
        for m, name in enumerate(MODELS):
            part = slice(m * n_items, min((m + 1) * n_items, rows))
            for key, prefix in [("jb_response", "jb_response_"),
                                *((f"jb_cls_{j}", f"jb_cls_{j}_") for j in JUDGES)]:
                values = columns[key][part].astype(object)
                wide[prefix + name] = np.concatenate([values, np.full(n_items - len(values), None)])
        columns = wide
    pq.write_table(pa.table({k: pa.array(v.tolist(), pa.string()) for k, v in columns.items()}), path,
                   row_group_size=100_000)
    return path


# Peak memory is read by the child itself (VmHWM, at exit): the kernel's ru_maxrss of a child also counts the
# parent's memory at the fork, which here holds the generated corpus.
PEAK = """
import atexit, os, runpy, sys
def peak():
    with open("/proc/self/status") as fh, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line.split()[1] for line in fh if line.startswith("VmHWM")))
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else \
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


SETTLE_S = 3.0  # after os.sync(): the kernel's write-back of the command before is not timed in this one


def run(args: list[str], cwd: Path) -> dict[str, float]:
    peak_file = cwd / "peak.txt"
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "120", "PEAK_FILE": str(peak_file)}
    env.pop("MIJABENCH_WORKSPACE", None)
    os.sync()  # an import leaves hundreds of MB to write back, which took a second off the next command
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PEAK, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # wait4: this child's own CPU time, unlike RUSAGE_CHILDREN's running total
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(args[:5])} failed:\n{err[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": int(peak_file.read_text()) / 1024, "stdout": out}


NAMES = ("import", "report", "grow", "grown", "cold", "warm", "select")


def as_format(corpus: Path, fmt: str) -> list[str]:
    """The import command's source arguments for the corpus written in ``fmt``: the Parquet file itself,
    a JSONL or CSV copy beside it, or a saved `datasets` copy read as the hub's (``--hub --from-disk``)."""
    if fmt == "parquet":
        return [str(corpus)]
    table = pq.read_table(corpus)
    if fmt == "csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, corpus.with_suffix(".csv"))
        return [str(corpus.with_suffix(".csv"))]
    if fmt == "jsonl":
        with open(corpus.with_suffix(".jsonl"), "w", encoding="utf-8") as out:
            for batch in table.to_batches(50_000):
                out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch.to_pylist())
        return [str(corpus.with_suffix(".jsonl"))]
    import datasets
    folder = corpus.with_name("hub-copy")
    datasets.Dataset(table).save_to_disk(str(folder))
    return ["AKCIT/mijabench_align", "--hub", "--from-disk", str(folder)]


def measure(rows: int, folder: Path, resamples: int, layout: str = "long", fmt: str = "parquet",
            reply_words: int = 0) -> dict[str, dict]:
    cli = ["mijabench"]  # `python -m mijabench`: the same entry point as the `mijabench` command
    corpus = folder / "corpus.parquet"
    ws = folder / "ws"
    voters = [a for j in JUDGES for a in ("--judge", j)]
    out = {}
    if ws.exists():  # --reuse: time the reading commands on a workspace imported before
        shutil.rmtree(ws / "mijabench.sqlite.judged", ignore_errors=True)
        out["import"] = {"wall": float("nan"), "cpu": float("nan"), "rss_mb": float("nan")}
    else:
        write_corpus(corpus, rows, layout=layout, reply_words=reply_words)
        source = as_format(corpus, fmt)
        out["import"] = run([*cli, "import", *source, "-w", str(ws), "--bench", "paper"], folder)
    report = [*cli, "report", "-w", str(ws), "--out", str(folder / "report"), *voters, "--resamples",
              str(resamples)]
    # first after the import, which left the table's snapshot (with --reuse: none, loaded from SQLite)
    out["report"] = run(report, folder)
    grow = folder / "grow_store.py"
    grow.write_text(GROW)
    out["grow"] = run([str(grow), str(ws)], folder)
    added = int(out["grow"]["stdout"].split()[-1])
    out["grown"] = run(report, folder)  # the snapshot, then the rows the run and the judge run added
    shutil.rmtree(ws / "mijabench.sqlite.judged", ignore_errors=True)
    out["cold"] = run(report, folder)  # no snapshot: loads from SQLite and writes one
    out["warm"] = run(report, folder)  # the store unchanged: the snapshot is read
    select = folder / "judge_selection.py"  # not select.py: the script's folder would hide the stdlib's
    select.write_text(SELECT)
    out["select"] = run([str(select), str(ws)], folder)
    if int(out["select"]["stdout"].split()[-1]) != rows + added:
        sys.exit(f"judge selection found {out['select']['stdout']!r} responses, expected {rows + added}")
    out["store_mb"] = {"size": (ws / "mijabench.sqlite").stat().st_size / 2**20}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[60_000, 600_000])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="keep corpora, workspaces and reports under this folder")
    parser.add_argument("--reuse", type=Path, help="a kept folder (paperN-...) whose workspace is timed "
                        "again, without generating or importing")
    parser.add_argument("--src", help="the mijabench source folder to time (default: this checkout's)")
    parser.add_argument("--layout", choices=("long", "wide"), default="long",
                        help="the corpus file's layout: long (a row per prompt and model) or wide (the "
                             "published one: a row per prompt, columns per model)")
    parser.add_argument("--format", choices=("parquet", "jsonl", "csv", "hub"), default="parquet",
                        help="the file the import reads: the corpus as Parquet, JSONL or CSV, or a saved "
                             "`datasets` copy imported as the hub's (--hub --from-disk)")
    parser.add_argument("--reply-words", type=int, default=0,
                        help="replies of about this many words each, all different (default: six short "
                             "stock sentences; real corpora's replies are longer, and every command that "
                             "reads the responses table pays for it)")
    args = parser.parse_args()
    global SRC
    SRC = args.src or SRC
    results = {}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        folder = args.reuse or Path(tempfile.mkdtemp(prefix=f"paper{rows}-", dir=args.keep))
        try:
            results[rows] = measure(rows, folder, args.resamples, args.layout, args.format, args.reply_words)
        finally:
            if args.keep is None and args.reuse is None:
                shutil.rmtree(folder, ignore_errors=True)
        r = results[rows]
        for name in NAMES:
            print(f"{rows:>9,} rows  {name:<7} wall {r[name]['wall']:6.1f} s  cpu {r[name]['cpu']:6.1f} s  "
                  f"peak {r[name]['rss_mb']:6.0f} MB", flush=True)
        print(f"{rows:>9,} rows  store   {r['store_mb']['size']:.0f} MB on disk", flush=True)
    print("\n| rows | import | report after the import | a model more (run and judges) | report after it | "
          "report, no snapshot | report again | judge selection |")
    print("|---:|---|---|---|---|---|---|---|")
    for rows, r in results.items():
        cells = [f"{r[n]['wall']:.1f} s / {r[n]['cpu']:.1f} s / {r[n]['rss_mb']:.0f} MB"
                 for n in NAMES]
        print(f"| {rows:,} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
