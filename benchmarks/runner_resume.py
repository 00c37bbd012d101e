"""Re-running a finished run: 40,000 items already answered must cost zero model calls and under 5 s.

The first run answers every item with a scripted backend (no server needed); then the same run is timed
twice: through the library (``run_items``, items read from the store, calls counted on the backend) and
through the command line (``mijabench run``, a fresh process, as a user would re-run it).

    .venv/bin/python benchmarks/runner_resume.py [--items 40000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mijabench.backends.registry import parse_model
from mijabench.backends.scripted import ScriptedBackend
from mijabench.records import BenchmarkItem
from mijabench.run.generate import run_items
from mijabench.store import Store

MODEL = "scripted:resume-bench"


def make_items(n: int) -> list[BenchmarkItem]:
    return [BenchmarkItem(language="en", group="women", seed_text=f"seed {i % 500}",
                          scenario_category="history", scenario_text=f"scenario {i % 21}",
                          strategy="persona_assignment",
                          prompt=f"prompt {i}: a story in a market square, told by a traveller",
                          provenance={"rewriter": "template", "n": i}) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40_000)
    args = parser.parse_args()
    config = parse_model(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        with Store(workspace) as store:
            start = time.perf_counter()
            store.put_items(make_items(args.items), bench="resume")
            first = ScriptedBackend(name=MODEL)
            stats = run_items(store, store.items("resume"), [config], concurrency=64, progress=False,
                              backends={MODEL: first})[MODEL]
            print(f"first run: {stats.done:,} answered with {first.calls:,} calls in "
                  f"{time.perf_counter() - start:.1f} s (items stored and answered)")

            start = time.perf_counter()
            again = ScriptedBackend(name=MODEL)
            stats = run_items(store, store.items("resume"), [config], concurrency=64, progress=False,
                              backends={MODEL: again})[MODEL]
            library_s = time.perf_counter() - start
            print(f"re-run (library, items read from the store): {again.calls} model calls, "
                  f"{stats.skipped:,} already stored, {library_s:.2f} s")

        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        done = subprocess.run([sys.executable, "-m", "mijabench", "run", "--bench", "resume",
                               "--model", MODEL, "--workspace", str(workspace)], env=env,
                              capture_output=True, text=True)
        cli_s = time.perf_counter() - start
        with Store(workspace) as store:
            (summary,) = [e for e in store.events(stage="generate")
                          if e["run_id"] == store.runs("generate")[-1]["id"]]
            total = store.query("SELECT COUNT(*) FROM responses")[0][0]
        answered = summary["detail"]["answered"] + summary["detail"]["failed"]
        print(f"re-run (command line, new process): exit {done.returncode}, {answered} model calls, "
              f"{summary['detail']['skipped']:,} already stored, {cli_s:.2f} s; {total:,} responses in store")
        ok = again.calls == 0 and answered == 0 and total == args.items and max(library_s, cli_s) < 5
        print(f"target: zero calls and < 5 s: {'OK' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
