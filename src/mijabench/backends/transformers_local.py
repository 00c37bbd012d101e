"""Local Hugging Face transformers backend: the model's own chat template, batched generation on CPU or GPU.

``generate()`` is async, but the model runs on one worker thread. Requests wait in a queue. For plain decoder
models the worker runs a continuous decode loop (``continuous.DecodeLoop``): a batch of rows decodes
together, and a row that finishes is refilled from the queue at once, whatever the other rows' lengths or
``max_tokens``. Its size is chosen from memory and measured throughput (``batch_size.RowChooser``). Other
architectures (sliding windows, hybrid caches) fall back to ``model.generate`` on batches of requests that
share ``max_tokens``. Either way the runner's concurrency turns into batches, and the event loop never blocks
on torch.

Sampling and seeds: greedy when ``temperature == 0``. Otherwise every request gets its own
``torch.Generator`` seeded with ``settings.seed`` and draws its tokens from its own row of logits. A
request's sampled text therefore depends on its prompt and seed only, not on which other requests happened
to share its batch -- the same contract as an OpenAI-style server's ``seed``.

Options (``ModelConfig.options``): ``device`` (auto|cpu|cuda|cuda:N), ``dtype`` (auto|float32|bfloat16|
float16; auto = bfloat16 on GPU, float32 on CPU), ``batch_size`` (rows decoded together; default: chosen
automatically), ``kv_cache_mb`` (memory for the decode loop's key/value buffer; default: a share of what is
available), ``batch_wait_ms`` (how long an idle worker waits for a batch to fill, default 20), ``threads``
(torch CPU threads; default on CPU: the cores left idle by other processes when the model loads, at least
one -- see ``idle_cpu_threads``).
"""

from __future__ import annotations

import asyncio
import gc
import queue
import threading
import time
import weakref
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MijaError
from ..records import SamplingSettings
from . import continuous
from .base import Backend, BackendError, Generation, GenerationRequest, Messages, with_system_prompt
from .batch_size import START_ROWS, RowChooser, memory_budget_bytes
from .errorkind import ErrorKind

_STOP = object()  # tells the worker thread to finish
REFILL_WINDOW = 256  # queued jobs a refill chooses from (by prompt length); the oldest is always taken


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    settled: bool = False  # a result was sent (the future itself is set later, on the event loop)
    prompt_ids: list[int] | None = None  # the prompt's tokens, once rendered (a job may wait several turns)

    @property
    def batch_key(self) -> int:
        # One model.generate call has one max_new_tokens; everything else is handled per row.
        return self.request.settings.max_tokens


class TransformersBackend(Backend):
    """A causal LM loaded with AutoModelForCausalLM from a local folder or a hub id."""

    adaptive_concurrency = False  # it batches locally: keep its queue full (see Backend)

    def __init__(self, source: str | Path | None, *, name: str | None = None, spec: str | None = None,
                 device: str = "auto", dtype: str = "auto", batch_size: int | None = None,
                 batch_wait_ms: float = 20.0, threads: int | None = None, concurrency: int | None = None,
                 family: str | None = None, params_b: float | None = None, kv_cache_mb: float | None = None):
        self.source = source
        self.spec = spec or f"hf:{source}"
        self.name = name or self.spec
        self.device_option, self.dtype_option = device, dtype
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.threads = threads
        self._batch_size_option = batch_size
        self.kv_cache_mb = kv_cache_mb
        self._family, self._params_b = family, params_b
        self._concurrency_option = concurrency
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: str | None = None
        self._load_lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False
        self.batches_run = 0  # model.generate calls, or prefill passes of the decode loop: shows the batching
        self.decode_loop: continuous.DecodeLoop | None = None  # None: model.generate batches
        self.chooser: RowChooser | None = None

    @property
    def batch_size(self) -> int:
        """Rows decoded together now: the ``batch_size`` option, else what the chooser has settled on."""
        if self._batch_size_option:
            return int(self._batch_size_option)
        if self.chooser is not None and self.decode_loop is not None:
            return self.chooser.rows(self.decode_loop.needed_capacity() or continuous.CAPACITY_STEP)
        return 32 if self._wants_cuda() else 8

    @property
    def default_concurrency(self) -> int:  # type: ignore[override]
        # Enough requests to fill the largest batch the chooser may pick, plus a queue to refill from.
        if self._concurrency_option:
            return self._concurrency_option
        if self._batch_size_option:
            return 2 * int(self._batch_size_option)
        return 160 if self._wants_cuda() else 80

    @classmethod
    def from_config(cls, config) -> TransformersBackend:
        """``hf:PATH_OR_ID``: a local folder (offline) or a hub id (needs network the first time)."""
        return cls(config.target, name=config.name, spec=config.spec, concurrency=config.concurrency,
                   family=config.family, params_b=config.params_b, **local_backend_options(config))

    # ---- loading ---------------------------------------------------------------------------------------

    def model_source(self) -> str | Path:
        """Where from_pretrained loads from. Subclasses (embedded, GGUF) prepare a local folder here."""
        if self.source is None:
            raise MijaError(f"{self.spec}: no model path or hub id given")
        return self.source

    def load(self) -> None:
        """Load tokenizer and model once (thread-safe); raises MijaError with a one-line reason."""
        with self._load_lock:
            if self.model is not None:
                return
            source = self.model_source()
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.device = self._pick_device()
            threads = self.threads or (None if self.device.startswith("cuda") else idle_cpu_threads(torch))
            if threads:
                torch.set_num_threads(int(threads))
            local = Path(str(source)).expanduser()
            if str(source).startswith(("/", ".", "~")) and not local.exists():
                raise MijaError(f"{self.spec}: no such model folder '{source}'")
            where = str(local) if local.exists() else str(source)
            if self.device.startswith("cuda") and not torch.cuda.is_available():
                raise MijaError(f"{self.spec}: device '{self.device}' asked for, but torch sees no GPU")
            dtype = self._pick_dtype(torch)
            try:
                with _quiet_progress_bars():
                    tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local.exists())
                    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype,
                                                                 local_files_only=local.exists())
            except (OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise MijaError(f"{self.spec}: cannot load the model ({first}); give a local folder, "
                                "or a hub id on a machine with network access") from exc
            if not tokenizer.chat_template:
                raise MijaError(f"{self.spec}: the tokenizer has no chat template (is this a base model? "
                                "mijabench sends chat messages)")
            tokenizer.padding_side = "left"  # generation continues at the right end of every row
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model.to(self.device)
            model.eval()
            self.tokenizer, self.model = tokenizer, model
            self._eos_ids = _eos_token_ids(model, tokenizer)
            self._start_decode_loop()

    def _start_decode_loop(self) -> None:
        """The continuous decode loop, for models that support it (else ``model.generate`` batches)."""
        self.decode_loop = self.chooser = None
        if not continuous.supports(self.model) or _has_own_processors(self.model):
            return
        fixed = int(self._batch_size_option) if self._batch_size_option else None
        budget = int(self.kv_cache_mb * 2**20) if self.kv_cache_mb else memory_budget_bytes(self.device)
        self.chooser = RowChooser(bytes_per_token=continuous.kv_bytes_per_token(self.model),
                                  budget_bytes=budget, start=START_ROWS, fixed=fixed)
        self.decode_loop = continuous.DecodeLoop(self.model, self._eos_ids, self.tokenizer.pad_token_id,
                                                 self.chooser.rows(512), rows_for=self.chooser.rows)

    def _wants_cuda(self) -> bool:
        if self.device_option.startswith("cuda"):
            return True
        if self.device_option != "auto":
            return False
        try:
            import torch
        except ImportError:
            return False
        return torch.cuda.is_available()

    def _pick_device(self) -> str:
        if self.device_option == "auto":
            return "cuda" if self._wants_cuda() else "cpu"
        return self.device_option

    def _pick_dtype(self, torch):
        if self.dtype_option == "auto":
            return torch.bfloat16 if str(self.device).startswith("cuda") else torch.float32
        if self.dtype_option not in {"float32", "bfloat16", "float16"}:
            raise MijaError(f"{self.spec}: unknown dtype '{self.dtype_option}' "
                            "(use auto, float32, bfloat16 or float16)")
        return getattr(torch, self.dtype_option)

    async def check(self) -> None:
        await asyncio.to_thread(self.load)

    def info(self) -> dict[str, Any]:
        self.load()
        counted = sum(p.numel() for p in self.model.parameters()) / 1e9
        info: dict[str, Any] = {
            "family": self._family or getattr(self.model.config, "model_type", None),
            "params_b": self._params_b or float(f"{counted:.4g}"),
            "device": self.device, "dtype": str(self.model.dtype).replace("torch.", ""),
            "batch_size": self._batch_size_option or "auto",
            "batching": "continuous" if self.decode_loop is not None else "generate",
        }
        return info

    # ---- prompts ---------------------------------------------------------------------------------------

    def chat_messages(self, request: GenerationRequest) -> Messages:
        """The conversation the template renders: the request's messages, with the settings' system prompt
        first when they have no system message (``base.with_system_prompt``), then the prefix as an open
        assistant turn."""
        messages = with_system_prompt(request.messages, request.settings.system_prompt)
        if request.prefix is not None:
            messages.append({"role": "assistant", "content": request.prefix})
        return messages

    def render_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the model's own chat template, thinking off unless asked for."""
        self.load()
        prefixed = request.prefix is not None
        return self.tokenizer.apply_chat_template(
            self.chat_messages(request), tokenize=False, add_generation_prompt=not prefixed,
            continue_final_message=prefixed,
            # Qwen3-style templates read this; templates that do not know it ignore it.
            enable_thinking=request.settings.thinking,
        )

    # ---- async side ------------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._closed:
            raise BackendError(f"{self.name}: backend is closed", retryable=False, kind=ErrorKind.CLOSED)
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(request, future, loop))
        return await future

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            # Daemon, so a caller that forgets aclose() does not hang the interpreter at exit.
            self._worker = threading.Thread(target=self._work, name=f"mijabench-{self.name}", daemon=True)
            self._worker.start()

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None and self._worker.is_alive():
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._worker.join)
        self._worker = None
        loop = self.decode_loop
        held = [weakref.ref(x) for x in (self.model, loop, getattr(loop, "cache", None)) if x is not None]
        del loop
        self.model = self.tokenizer = self.decode_loop = None
        if any(ref() is not None for ref in held):
            gc.collect()  # something of the model is in a reference cycle: its memory goes now, not later
        try:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # ---- worker thread ---------------------------------------------------------------------------------

    def _work(self) -> None:
        pending: deque[_Job] = deque()
        stopping = False
        while True:
            decoding = self.decode_loop is not None and self.decode_loop.active > 0
            if not pending and not decoding:
                if stopping:
                    break
                job = self._jobs.get()
                if job is _STOP:
                    break
                pending.append(job)
            try:
                self.load()
            except MijaError as exc:
                error = BackendError(str(exc), retryable=False, kind=ErrorKind.LOAD_ERROR)
                while pending:
                    _settle(pending.popleft(), error)
                continue
            if self.decode_loop is None:
                stopping = self._gather(pending) or stopping
                batch = _take_batch(pending, self.batch_size)
                if batch:
                    self._run_batch(batch)
            else:
                # Idle, wait briefly for a batch to gather; decoding, only take what is already queued.
                stopping = (self._drain(pending) if decoding else self._gather(pending)) or stopping
                self._decode_turn(pending)
        for job in pending:
            _settle(job, BackendError(f"{self.name}: backend closed", retryable=False, kind=ErrorKind.CLOSED))
        while True:  # requests that arrived after the stop signal
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                _settle(job, BackendError(f"{self.name}: backend closed", retryable=False,
                                          kind=ErrorKind.CLOSED))

    def _drain(self, pending: deque[_Job]) -> bool:
        """Take whatever is queued without waiting. True when told to stop."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return False
            if job is _STOP:
                return True
            pending.append(job)

    def _decode_turn(self, pending: deque[_Job]) -> None:
        """Refill the decode loop's free rows from ``pending`` (the oldest first, with those nearest its
        length: ``_take_refill``), then run one step.
        Out of memory: the rows go back to the queue and the loop goes on with half as many."""
        loop, chooser = self.decode_loop, self.chooser
        assert loop is not None and chooser is not None
        for job in [j for j in pending if j.future.done()]:  # given up on by their callers
            pending.remove(job)
        for job in loop.owners():
            if job.future.done():
                loop.drop(job)
        # the width the active rows need, not the buffer's: once its long rows are done, more rows may fit
        # (admit narrows the buffer then); idle, the width is unknown until the prompts' lengths are
        width = loop.needed_capacity() or continuous.CAPACITY_STEP
        loop.set_rows(chooser.rows(width))
        free, taken = loop.free, []
        # Refill once a few rows are free: each refill is a forward pass of its own.
        if pending and free and (not loop.active or free >= max(1, loop.rows // 8) or len(pending) <= free):
            taken = self._take_refill(pending, free)
        try:
            if taken:
                finished, left = loop.admit(self._row_requests(taken))
                pending.extendleft(reversed([request.owner for request in left]))  # first in line next turn
                self._finish(finished)
                self.batches_run += 1
            if loop.active:
                rows, active, start = loop.rows, loop.active, time.perf_counter()
                finished = loop.step()
                chooser.record(rows, active, time.perf_counter() - start, width)
                self._finish(finished)
        except Exception as exc:  # noqa: BLE001 - a failure of the model is reported per request
            jobs = [j for j in {id(j): j for j in [*loop.owners(), *taken]}.values() if not j.settled]
            loop.clear()
            if _out_of_memory(exc) and chooser.current > 1:
                chooser.shrink()
                pending.extendleft(reversed(jobs))  # they start again, first in line
                return
            kind = ErrorKind.OOM if _out_of_memory(exc) else ErrorKind.LOCAL_ERROR
            error = BackendError(f"{self.name}: generation failed ({type(exc).__name__}: {exc})",
                                 retryable=False, kind=kind)
            for job in jobs:
                _settle(job, error)

    def _take_refill(self, pending: deque[_Job], free: int) -> list[_Job]:
        """Up to ``free`` jobs out of ``pending`` for one refill: the oldest, and those nearest its prompt in
        length among the next ``REFILL_WINDOW``. Refills come a few rows at a time, and the prefill pads each
        prompt to the longest of its pass: taken in arrival order, a quarter of the demo's prefilled tokens
        were padding (now a tenth). The oldest job is always taken, so none waits for long."""
        if free >= len(pending):
            return [pending.popleft() for _ in range(len(pending))]
        window = [pending.popleft() for _ in range(min(len(pending), REFILL_WINDOW))]
        ready = [job for job in window if self._tokenize(job)]  # a template that failed settled its job
        picked = set(continuous.nearest_prompts([job.prompt_ids for job in ready], free))
        pending.extendleft(reversed([job for i, job in enumerate(ready) if i not in picked]))
        return [job for i, job in enumerate(ready) if i in picked]

    def _tokenize(self, job: _Job) -> bool:
        """Render and tokenize the job's prompt once; False (the job settled with the error) when the chat
        template rejects its messages."""
        if job.prompt_ids is None:
            try:
                text = self.render_prompt(job.request)
            except Exception as exc:  # noqa: BLE001 - a template that rejects these messages
                _settle(job, BackendError(f"{self.name}: chat template failed ({exc})", retryable=False,
                                          kind=ErrorKind.TEMPLATE_ERROR))
                return False
            job.prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return True

    def _row_requests(self, jobs: list[_Job]) -> list[continuous.RowRequest]:
        return [continuous.RowRequest(job, job.prompt_ids, job.request.settings)
                for job in jobs if self._tokenize(job)]

    def _finish(self, results: list[continuous.RowResult]) -> None:
        for result in results:
            text = self.tokenizer.decode(result.tokens, skip_special_tokens=True)
            _settle(result.owner, Generation(text, result.prompt_tokens, result.completion_tokens,
                                             result.finish_reason, result.latency_s))

    def _gather(self, pending: deque[_Job]) -> bool:
        """Wait briefly for the batch to fill, then take whatever else is queued. True when told to stop."""
        deadline = time.monotonic() + self.batch_wait_s
        while len(pending) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return True
            pending.append(job)
        return False

    def _run_batch(self, jobs: list[_Job]) -> None:
        start = time.monotonic()
        try:
            self.load()
            results = self._generate_batch([job.request for job in jobs])
        except MijaError as exc:
            error = BackendError(str(exc), retryable=False, kind=ErrorKind.LOAD_ERROR)
            results = [error] * len(jobs)
        except Exception as exc:  # noqa: BLE001 - any failure of the model is reported per request
            retryable = _out_of_memory(exc)
            error = BackendError(f"{self.name}: generation failed ({type(exc).__name__}: {exc})",
                                 retryable=retryable,
                                 kind=ErrorKind.OOM if retryable else ErrorKind.LOCAL_ERROR)
            results = [error] * len(jobs)
        latency = time.monotonic() - start
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, Generation):
                result = Generation(result.text, result.prompt_tokens, result.completion_tokens,
                                    result.finish_reason, latency)
            _settle(job, result)

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[Generation | BackendError]:
        import torch

        texts: list[str] = []
        results: list[Generation | BackendError | None] = [None] * len(requests)
        rows: list[int] = []
        for i, request in enumerate(requests):
            try:
                texts.append(self.render_prompt(request))
                rows.append(i)
            except Exception as exc:  # noqa: BLE001 - a template that rejects these messages
                results[i] = BackendError(f"{self.name}: chat template failed ({exc})", retryable=False,
                                          kind=ErrorKind.TEMPLATE_ERROR)
        if not rows:
            return results  # type: ignore[return-value]
        settings = [requests[i].settings for i in rows]
        max_new = settings[0].max_tokens
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        sampler = _SeededRowSampler(settings)
        with torch.inference_mode():
            output = self.model.generate(
                **encoded, max_new_tokens=max_new, do_sample=False, num_beams=1,
                # Unset the model's own sampling defaults: the row sampler decides, greedy search obeys it.
                temperature=None, top_p=None, top_k=None,
                logits_processor=[sampler] if sampler.active else None,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self._eos_ids)
        prompt_len = encoded["input_ids"].shape[1]
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        for row, i in enumerate(rows):
            new_tokens = output[row, prompt_len:].tolist()
            stop_at = next((k for k, t in enumerate(new_tokens) if t in self._eos_ids), None)
            kept = new_tokens if stop_at is None else new_tokens[:stop_at]
            results[i] = Generation(
                text=self.tokenizer.decode(kept, skip_special_tokens=True),
                prompt_tokens=int(prompt_tokens[row]),
                completion_tokens=len(kept) + (0 if stop_at is None else 1),
                finish_reason="stop" if stop_at is not None else "length")
        self.batches_run += 1
        return results  # type: ignore[return-value]


class _SeededRowSampler:
    """A logits processor that samples each row with its own seeded generator and then masks every other
    token, so the (greedy) search keeps exactly the sampled token. Greedy rows pass through untouched.

    Why not ``do_sample=True`` with ``torch.manual_seed``: one global generator serves the whole batch, so a
    request's sample would depend on its batch neighbours and its row index."""

    def __init__(self, settings: list[SamplingSettings]):
        self.settings = settings
        self.active = any(s.temperature > 0 for s in settings)
        self.generators: list[Any] = []

    def __call__(self, input_ids, scores):
        import torch

        if not self.generators:
            self.generators = [torch.Generator(device=scores.device).manual_seed(int(s.seed))
                               for s in self.settings]
        for row, s in enumerate(self.settings):
            if s.temperature <= 0:
                continue
            token = continuous.sample_token(scores[row], s, self.generators[row])
            scores[row].fill_(float("-inf"))
            scores[row, token] = 0.0
        return scores


def _take_batch(pending: deque[_Job], size: int) -> list[_Job]:
    """Up to ``size`` live jobs sharing the first live job's max_tokens; the others keep their place."""
    while pending and pending[0].future.done():  # cancelled by a timeout while waiting
        pending.popleft()
    if not pending:
        return []
    key = pending[0].batch_key
    batch, rest = [], deque()
    while pending:
        job = pending.popleft()
        if job.future.done():
            continue
        if job.batch_key == key and len(batch) < size:
            batch.append(job)
        else:
            rest.append(job)
    pending.extend(rest)
    return batch


def _settle(job: _Job, result: Generation | BackendError) -> None:
    job.settled = True

    def apply() -> None:
        if job.future.done():
            return
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(apply)
    except RuntimeError:  # the caller's event loop is gone; nobody is waiting any more
        pass


@contextmanager
def _quiet_progress_bars():
    """No tqdm bar for a load that takes a second: it would tear through the runner's Rich display."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _out_of_memory(exc: BaseException) -> bool:
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower())


def _has_own_processors(model) -> bool:
    """Whether the model's generation config changes greedy picks (a repetition penalty, banned n-grams,
    a minimum length): ``model.generate`` applies those, so the decode loop, which does not, is not used."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return False
    return any(getattr(config, name, None) not in neutral for name, neutral in (
        ("repetition_penalty", (None, 1.0)), ("no_repeat_ngram_size", (None, 0)),
        ("min_new_tokens", (None, 0)), ("min_length", (None, 0)), ("bad_words_ids", (None,)),
        ("suppress_tokens", (None,)), ("begin_suppress_tokens", (None,)), ("sequence_bias", (None,)),
        ("encoder_repetition_penalty", (None, 1.0)), ("forced_bos_token_id", (None,)),
        ("forced_eos_token_id", (None,)), ("exponential_decay_length_penalty", (None,))))


def idle_cpu_threads(torch) -> int:
    """Torch threads for CPU inference: torch's own default, less the cores other processes keep busy (CPU
    use over a quarter second as the model loads, less this process's own, whose threads share torch's one
    pool; the load average lags by a minute), at least 1. Torch's threads meet at a barrier after every
    operation; when one of them waits for a core, the others spin for a whole time slice. On the 2-core test
    machine at load 3-4, ten decode steps of three rows took 16.8 s of CPU with two threads and 0.8 s with
    one."""
    import os

    import psutil

    global _TORCH_DEFAULT_THREADS
    if _TORCH_DEFAULT_THREADS is None:  # before any load lowered it
        _TORCH_DEFAULT_THREADS = torch.get_num_threads()
    cores = os.cpu_count() or 1
    me = psutil.Process()
    own_before = sum(me.cpu_times()[:2])
    busy = psutil.cpu_percent(interval=IDLE_PROBE_S) / 100 * cores
    own = (sum(me.cpu_times()[:2]) - own_before) / IDLE_PROBE_S
    others = max(0.0, busy - own)
    return max(1, min(_TORCH_DEFAULT_THREADS, int(cores - others + 0.5)))


IDLE_PROBE_S = 0.25
_TORCH_DEFAULT_THREADS: int | None = None


def _eos_token_ids(model, tokenizer) -> list[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(t) for t in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def local_backend_options(config) -> dict[str, Any]:
    """The options of an in-process backend (transformers, GGUF, embedded), checked: an unknown one is an
    error naming the model, not silently ignored."""
    known = {"device", "dtype", "batch_size", "batch_wait_ms", "threads", "kv_cache_mb"}
    unknown = set(config.options) - known
    if unknown:
        raise MijaError(f"{config.spec}: unknown option(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(known))})")
    return dict(config.options)
