"""The Ray Data execution mode: generate a benchmark on a Ray cluster (or a local Ray instance) instead of in
this process, with the same store, the same response ids and the same resume guarantees as ``run_items``.

    from mijabench.run.ray_mode import run_items_ray
    stats = run_items_ray(store, store.items("demo"), [parse_model("openai:llama3@http://vllm:8000/v1")],
                          ray_address="auto", num_workers=8)

How it works, per model:

1. The driver (this process) decides what is pending exactly as the local runner does (``pending_items``:
   answered responses are skipped, stored errors are sent again) and splits the pending requests into blocks.
2. ``num_workers`` Ray actors each build the backend from its ``ModelConfig`` once (backends hold sessions,
   threads or model weights, so they are built where they run, never shipped) and run the same async engine
   (``execute``: concurrency, adaptive limit, retries) over one block at a time.
3. Finished blocks stream back to the driver, which stores each one in one transaction as it arrives. A
   killed run loses only the blocks still in flight; the next run sends those again, and since a response's
   id is its (item, model, settings) key nothing is stored twice.

``engine="vllm"`` swaps step 2 for Ray's LLM batch API (``ray.data.llm`` processors running vLLM engines on
GPU nodes). That path (``ray_vllm.py``) is a thin wrapper and is UNTESTED here (no GPU); see
docs/scale-out.md.

Ray is an optional extra (``pip install 'mijabench[ray]'``) and is imported only inside these functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from ..backends.base import GenerationRequest
from ..backends.errorkind import FATAL_KINDS, ErrorKind
from ..backends.registry import ModelConfig, create_backend
from ..errors import MijaError
from ..records import BenchmarkItem, Response
from ..store import Store
from .engine import Outcome, RetryPolicy, RunStats, execute
from .generate import (
    build_messages,
    check_servers,
    pending_items,
    prepare_run,
    progress_display,
)
from .progress import StageProgress

ENGINES = ("backend", "vllm")
MAX_BLOCK = 2048  # rows: bigger blocks mean fewer round trips but more work lost when a run is killed
BLOCKS_PER_WORKER = 4
BLOCK_ROUNDING = 64  # blocks are a multiple of the per-worker limit; this when the config sets none
WORKER_START_TIMEOUT_S = 900  # seconds for the whole pool to start (backends built, large models loaded)
TASKS_QUEUED = 4  # blocks handed to a worker ahead, so it never waits for the driver between blocks
WORKER_META = "mijabench.worker"  # schema metadata key: the worker's backend, its limit and info()


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra)
    except ImportError as exc:
        raise MijaError("the Ray executor needs Ray Data; install it with: "
                        "pip install 'mijabench[ray]'") from exc
    return ray


def block_size_for(pending: int, num_workers: int, per_worker_limit: int) -> int:
    """Rows per block. Each worker should get several blocks (so results reach the store while the run goes
    on, and a killed run loses little), about as many as the others (the run ends with its busiest worker),
    and a block should be a whole number of rounds of the worker's in-flight limit (so its last round
    keeps every slot busy). A small run gets one block per worker, so that no worker sits idle."""
    per_worker = math.ceil(pending / num_workers)
    if per_worker <= per_worker_limit:
        return max(1, per_worker)
    rounds = math.ceil(pending / (num_workers * BLOCKS_PER_WORKER) / per_worker_limit)
    max_rounds = max(1, MAX_BLOCK // per_worker_limit)
    return min(rounds, max_rounds) * per_worker_limit


# -- on the workers ---------------------------------------------------------------------------------------

# Columns a worker returns per request; the driver turns each row back into a Response.
_OUT_COLUMNS = ("rid", "item_id", "text", "prompt_tokens", "completion_tokens", "latency_s", "finish_reason",
                "error", "error_kind", "attempts")


class BlockGenerator:
    """A Ray Data actor: builds the model's backend once, then answers one block of requests per call with
    the same engine the local runner uses. A fatal error (bad key, unknown model) stops this worker from
    sending more; the requests it did not send come back next run."""

    def __init__(self, config: ModelConfig, policy: RetryPolicy):
        self.config, self.policy = config, policy
        self.loop = asyncio.new_event_loop()  # one loop for the actor's life: backends bind sessions to it
        self.fatal: str | None = None
        # Built and checked here, where it will run: a model the workers cannot reach fails the run at once.
        # The error is sent back as data rather than raised: an actor that dies in its constructor makes
        # Ray print pages of tracebacks, and the driver only needs the one line.
        try:
            self.backend = create_backend(config)
            self.loop.run_until_complete(self.backend.check())
            self.limit = config.concurrency or self.backend.default_concurrency
            # Sent back with every block, so the driver records the model without building a backend.
            about = {"backend": type(self.backend).__name__, "concurrency": self.limit,
                     "info": self.backend.info()}
        except Exception as exc:  # whatever it is, the driver reports it and stops
            about = {"error": str(exc) if isinstance(exc, MijaError) else f"{type(exc).__name__}: {exc}"}
        self.about = about
        self.broken = "error" in about

    def __call__(self, block):
        import pyarrow as pa

        if self.broken:  # one row (Ray drops empty blocks) whose metadata carries the error
            marker = {name: [None] for name in _OUT_COLUMNS}
            return pa.table(marker, schema=_out_schema().with_metadata(self._meta()))
        block_started = time.time()
        rows = block.to_pydict()
        item_of = dict(zip(rows["rid"], rows["item_id"], strict=True))
        settings = self.config.settings
        outcomes: list[Outcome] = []

        def requests() -> Iterator[GenerationRequest]:
            for rid, messages in zip(rows["rid"], rows["messages"], strict=True):
                if self.fatal:
                    return
                yield GenerationRequest(key=rid, messages=json.loads(messages), settings=settings)

        def on_result(outcome: Outcome) -> None:
            outcomes.append(outcome)
            if outcome.error is not None and outcome.error.kind in FATAL_KINDS and not self.fatal:
                self.fatal = str(outcome.error)

        self.loop.run_until_complete(execute(requests(), self.backend, on_result, concurrency=self.limit,
                                             policy=self.policy,
                                             adaptive=self.backend.adaptive_concurrency))
        out: dict[str, list[Any]] = {name: [] for name in _OUT_COLUMNS}
        for outcome in outcomes:
            gen, err = outcome.generation, outcome.error
            values = (outcome.request.key, item_of[outcome.request.key],
                      gen.text if gen else None, gen.prompt_tokens if gen else None,
                      gen.completion_tokens if gen else None, gen.latency_s if gen else None,
                      gen.finish_reason if gen else None,
                      (f"{err.kind}: {err}" if err else "unknown error") if gen is None else None,
                      err.kind if err else None, outcome.attempts)
            for name, value in zip(_OUT_COLUMNS, values, strict=True):
                out[name].append(value)
        # The block's start and end (this worker's wall clock) tell start-up from generation time.
        return pa.table(out, schema=_out_schema().with_metadata(self._meta(block_started, time.time())))

    def _meta(self, started: float | None = None, finished: float | None = None) -> dict[str, str]:
        about = {**self.about, "started": started, "finished": finished}
        return {WORKER_META: json.dumps(about, default=str)}


def _out_schema():
    import pyarrow as pa

    text, num, real = pa.string(), pa.int64(), pa.float64()
    return pa.schema([("rid", text), ("item_id", text), ("text", text), ("prompt_tokens", num),
                      ("completion_tokens", num), ("latency_s", real), ("finish_reason", text),
                      ("error", text), ("error_kind", text), ("attempts", num)])


# -- on the driver -----------------------------------------------------------------------------------------

def run_items_ray(store: Store, items: Sequence[BenchmarkItem], configs: Sequence[ModelConfig], *,
                  concurrency: int | None = None, policy: RetryPolicy | None = None,
                  progress: bool | str | StageProgress = True, bench: str | None = None,
                  ray_address: str | None = None, num_workers: int = 2, block_size: int | None = None,
                  engine: str = "backend", num_cpus: float = 1.0,
                  num_gpus: float = 0.0, allow_model_change: bool = False) -> dict[str, RunStats]:
    """``run_items`` on Ray: the same arguments and results (RunStats per model name), plus where and how.

    ``ray_address``: a cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); ``None`` uses the Ray
    already initialised in this process, else ``RAY_ADDRESS``, else starts a local instance (shut down again
    at the end). ``num_workers`` actors per model, each reserving ``num_cpus``/``num_gpus``; ``concurrency``
    is the in-flight limit *per worker*. ``block_size`` rows per block (default: see ``block_size_for``).
    ``engine`` is ``"backend"`` (any mijabench backend on the workers) or ``"vllm"`` (untested; see
    ``ray_vllm``). Models run one after another, each over the whole pool. Each model's start-up and
    generation times are logged as a ``ray_timing`` event of the run.
    """
    if engine not in ENGINES:
        raise MijaError(f"unknown Ray engine '{engine}' (known: {', '.join(ENGINES)})")
    if num_workers < 1:
        raise MijaError("the Ray executor needs at least one worker")
    ray = _import_ray()
    policy = policy or RetryPolicy()
    # the workers check their own backends, but only after the driver has stored the items: the HTTP
    # servers (what can be down, misnamed or serving other weights) are checked here first
    check_servers(store, configs, allow_model_change=allow_model_change)
    items, configs = prepare_run(store, items, configs, concurrency=concurrency, bench=bench)

    started = connect(ray_address, num_workers * num_cpus)
    results: dict[str, RunStats] = {}
    timing: dict[str, dict[str, Any]] = {}
    try:
        run_id = store.new_run("generate", {
            "bench": bench, "items": len(items), "policy": asdict(policy),
            "executor": {"kind": "ray", "engine": engine, "workers": num_workers, "block_size": block_size,
                         "address": ray_address or os.environ.get("RAY_ADDRESS") or "local"},
            "models": [{"name": c.name, "spec": c.spec, "settings": c.settings.to_dict(),
                        "options": c.options, "concurrency": c.concurrency} for c in configs]})
        display = progress_display("generate", progress)
        with display:
            for config in configs:
                results[config.name], timing[config.name] = _run_model(
                    ray, store, items, config, policy, run_id, display, num_workers=num_workers,
                    block_size=block_size, engine=engine, num_cpus=num_cpus, num_gpus=num_gpus)
    finally:
        if started:
            ray.shutdown()
    store.log_events(run_id, "generate", [(name, "summary", s.summary()) for name, s in results.items()]
                     + [(name, "ray_timing", t) for name, t in timing.items() if t])
    return results


def connect(address: str | None = None, min_cpus: float = 1.0) -> bool:
    """Make sure this process is attached to Ray; True when it started a local instance itself."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "configure_logging": True, "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise MijaError(f"cannot connect to the Ray cluster at {address} ({exc})") from exc
        return False
    # Locally the workers mostly wait on I/O: give Ray enough logical CPUs for the pool even on small hosts.
    ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(min_cpus)), log_to_driver=False, **quiet)
    return True


RAY_FIELDS = ("address", "workers", "engine", "gpus")  # an audit config's ``ray:`` mapping
ENGINES = ("backend", "vllm")


def check_ray_options(options: dict[str, Any]) -> None:
    """An audit config's ``ray:`` mapping, checked before any work: one line naming the bad field."""
    from ..errors import InputError
    unknown = [k for k in options if k not in RAY_FIELDS]
    if unknown:
        raise InputError(f"ray: unknown field '{unknown[0]}' (known: {', '.join(RAY_FIELDS)})", field="ray")
    workers, gpus = options.get("workers", 2), options.get("gpus", 0.0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"ray.workers must be a whole number of at least 1, got {workers!r}", field="ray")
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise InputError(f"ray.gpus must be a number of at least 0, got {gpus!r}", field="ray")
    if options.get("engine", "backend") not in ENGINES:
        raise InputError(f"ray.engine must be one of {', '.join(ENGINES)}, got {options['engine']!r}",
                         field="ray")


def ray_run_options(options: dict[str, Any]) -> dict[str, Any]:
    """An audit config's ``ray:`` mapping (RAY_FIELDS) as ``run_items_ray``'s keyword arguments."""
    return {"ray_address": options.get("address"), "num_workers": options.get("workers", 2),
            "engine": options.get("engine", "backend"), "num_gpus": options.get("gpus", 0.0)}


@contextmanager
def ray_runner(**run_options: Any) -> Iterator[Any]:
    """One Ray connection for several ``run_items_ray`` calls (a budgeted audit's looks): yields a function
    with ``run_items``'s contract and ``run_options`` (``run_items_ray``'s own keywords, the address among
    them, so each look's run records where it ran), and shuts down at the end a local instance it started
    itself."""
    from functools import partial
    started = connect(run_options.get("ray_address"),
                      run_options.get("num_workers", 2) * run_options.get("num_cpus", 1.0))
    try:
        yield partial(run_items_ray, **run_options)
    finally:
        if started:
            _import_ray().shutdown()


@contextmanager
def _data_context(ray, engine: str) -> Iterator[None]:
    """Ray Data settings for the datasets made inside (each dataset keeps a copy); the process-wide
    defaults are put back afterwards, for whatever else the caller runs on Ray."""
    context = ray.data.DataContext.get_current()
    changes: dict[str, Any] = {"enable_progress_bars": False,  # our own display shows progress
                               "print_on_execution_start": False}
    if engine == "backend" and hasattr(context, "wait_for_min_actors_s"):
        # Start sending only once every worker is up: blocks then spread evenly, start-up time is one clear
        # figure, and a cluster that cannot host the pool (no GPU left, say) fails with a timeout instead
        # of waiting forever.
        changes["wait_for_min_actors_s"] = WORKER_START_TIMEOUT_S
    saved = {name: getattr(context, name) for name in changes if hasattr(context, name)}
    for name, value in changes.items():
        setattr(context, name, value)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)


def _run_model(ray, store: Store, items: list[BenchmarkItem], config: ModelConfig, policy: RetryPolicy,
               run_id: str, display: StageProgress, *, num_workers: int, block_size: int | None,
               engine: str, num_cpus: float, num_gpus: float) -> tuple[RunStats, dict[str, Any]]:
    import pyarrow as pa

    settings = config.settings
    todo = pending_items(store, items, config.name, settings)
    stats = RunStats(skipped=len(items) - len(todo))
    bar = display.add(config.name, total=len(items), skipped=stats.skipped)
    if not todo:
        return stats, {}
    size = block_size or block_size_for(len(todo), num_workers, config.concurrency or BLOCK_ROUNDING)
    blocks = [pa.table({"rid": [rid for _, rid in chunk], "item_id": [item.id for item, _ in chunk],
                        "messages": [json.dumps(build_messages(item, settings), ensure_ascii=False)
                                     for item, _ in chunk]})
              for chunk in (todo[start:start + size] for start in range(0, len(todo), size))]
    with _data_context(ray, engine):
        # from_blocks keeps our blocks as they are and reads their metadata here; from_arrow (the public
        # fallback for older Ray) runs one remote task per block just for that.
        from_blocks = getattr(ray.data, "from_blocks", None) or ray.data.from_arrow
        dataset = from_blocks(blocks)
        if engine == "vllm":
            from .ray_vllm import vllm_stage

            dataset = vllm_stage(config, num_workers)(dataset)
        else:
            pool = ray.data.ActorPoolStrategy(size=num_workers, max_tasks_in_flight_per_actor=TASKS_QUEUED)
            dataset = dataset.map_batches(
                BlockGenerator, fn_constructor_kwargs={"config": config, "policy": policy}, batch_size=None,
                batch_format="pyarrow", compute=pool, num_cpus=num_cpus, num_gpus=num_gpus or None)

    settings_dict = settings.to_dict()  # one dict shared by every response: the store hashes it once
    start = time.time()
    first_started = math.inf  # when the first worker began its first block (its clock; same host locally)
    last_finished = -math.inf  # when the last block was done on its worker
    worker: dict[str, Any] | None = None
    done_blocks, busy = 0, 0.0  # busy: seconds the workers spent on blocks, all together
    try:
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            about = _worker_meta(block, engine)
            if "error" in about:  # a worker could not build or reach the model: nothing of it is stored
                raise MijaError(about["error"])
            if worker is None:
                worker = _record_model(store, config, about)
                stats.concurrency = int(worker.get("concurrency") or 0) * num_workers
            rows = block.to_pylist()
            store.put_responses([_response(row, config.name, settings_dict, run_id, stats) for row in rows])
            done_blocks += 1
            if about.get("started"):
                first_started = min(first_started, about["started"])
                last_finished = max(last_finished, about["finished"])
                busy += about["finished"] - about["started"]
            stats.elapsed_s = time.time() - start
            bar.update(stats)
            if stats.aborted:
                break  # leaving the loop stops the dataset; the requests not sent stay pending
    except ray.exceptions.RayError as exc:  # what was stored stays stored; the rest is sent next run
        raise MijaError(f"a Ray worker for {config.name} failed: {_last_line(exc)}") from exc
    end = time.time()
    stats.elapsed_s = end - start
    bar.update(stats)
    began = first_started if math.isfinite(first_started) else None
    return stats, {"blocks": done_blocks, "block_size": size, "workers": num_workers,
                   "total_s": round(end - start, 3),
                   "startup_s": round(began - start, 3) if began else None,
                   "generate_s": round(end - began, 3) if began else None,
                   "worker_busy_s": round(busy, 3),  # over workers * generate_s: how busy they were
                   "last_block_lag_s": round(end - last_finished, 3) if began else None}


def _worker_meta(block, engine: str) -> dict[str, Any]:
    """What the worker that made this block says about itself (vLLM blocks say nothing)."""
    raw = (block.schema.metadata or {}).get(WORKER_META.encode())
    return json.loads(raw) if raw else {"backend": engine, "info": {}}


def _record_model(store: Store, config: ModelConfig, worker: dict[str, Any]) -> dict[str, Any]:
    """Store the model's row from what the first block says about the worker's backend."""
    info = worker.get("info") or {}
    store.put_model(config.name, config.spec, family=config.family or info.get("family"),
                    params_b=config.params_b if config.params_b is not None else info.get("params_b"),
                    meta={"backend": worker.get("backend"), "executor": "ray", **info})
    return worker


def _last_line(exc: BaseException) -> str:
    """The root error of a Ray exception, whose text is a whole remote traceback. A MijaError's own
    one-line message is given without its class name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.removeprefix("mijabench.errors.MijaError: ").removeprefix("mijabench.errors.InputError: ")


def _response(row: dict[str, Any], model: str, settings: dict[str, Any], run_id: str,
              stats: RunStats) -> Response:
    """One result row (from a BlockGenerator, or from vLLM where a failed row carries ``__inference_error__``
    and skipped the postprocess step) as a Response, counted in ``stats``."""
    from ..backends.base import BackendError

    error, kind = row.get("error"), row.get("error_kind")
    if row.get("__inference_error__"):
        kind = ErrorKind.INFERENCE_ERROR
        error = f"{kind}: {row['__inference_error__']}"
    attempts = int(row.get("attempts") or 1)
    stats.retries += attempts - 1
    if error is not None or row.get("text") is None:
        error = error or "unknown error"
        message = error.split(": ", 1)[-1]
        stats.count_failure(BackendError(message, retryable=False, kind=kind or ErrorKind.ERROR))
        if kind in FATAL_KINDS and not stats.aborted:
            stats.aborted = message  # the message, as the local runner gives it
        return Response(id=row["rid"], item_id=row["item_id"], model=model, settings=settings, error=error,
                        attempts=attempts, run_id=run_id)
    stats.done += 1
    return Response(id=row["rid"], item_id=row["item_id"], model=model, settings=settings, text=row["text"],
                    prompt_tokens=row.get("prompt_tokens"), completion_tokens=row.get("completion_tokens"),
                    latency_s=row.get("latency_s"), finish_reason=row.get("finish_reason"),
                    attempts=attempts, run_id=run_id)
