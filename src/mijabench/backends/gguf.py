"""GGUF model files: ``gguf:PATH``.

Two ways to run one:

* llama.cpp through ``llama-cpp-python`` when it is installed (optional, fast on CPU): its own chat
  completion API on one executor thread, and raw completion over the rendered chat template for prefixes.
* otherwise transformers + ``gguf``: the file is dequantized to float32 once and saved as an ordinary model
  folder in the cache (keyed by the file's sha256), then served by the transformers backend. The embedded
  default model goes through the same conversion.

The conversion cache lives under ``$MIJABENCH_CACHE`` or ``~/.cache/mijabench/models``. A folder is built
under a temporary name and renamed into place when complete, so a killed conversion never leaves a half cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import MijaError
from ..paths import sha256_file
from .base import Backend, BackendError, Generation, GenerationRequest, Messages, with_system_prompt
from .errorkind import ErrorKind
from .transformers_local import TransformersBackend, local_backend_options

MANIFEST = "mijabench-cache.json"  # written last inside the temporary folder: marks a complete conversion
conversions = 0  # conversions done by this process (tests check that a cached model is not converted again)


def cache_root() -> Path:
    return Path(os.environ.get("MIJABENCH_CACHE") or Path.home() / ".cache" / "mijabench" / "models")


def converted_model_dir(gguf_path: Path, sha256: str, label: str) -> Path:
    """The cache folder holding ``gguf_path`` converted to a transformers model; converts on first use.
    ``sha256`` must be the file's verified digest (it names the folder)."""
    root = cache_root()
    final = root / f"{label}-{sha256[:8]}"
    if (final / MANIFEST).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root, label)
    if final.exists():  # a folder without its manifest was not made by us, or was damaged: rebuild it
        shutil.rmtree(final)
    temp = root / f".tmp-{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _convert(gguf_path, temp)
        (temp / MANIFEST).write_text(json.dumps({
            "source": str(gguf_path), "sha256": sha256, "converted_at": time.time(), "dtype": "float32",
        }, indent=2), encoding="utf-8")
        try:
            temp.rename(final)
        except OSError:
            if not (final / MANIFEST).is_file():  # lost a race to another process that finished first
                raise
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return final


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantize with transformers and save an ordinary float32 model folder plus tokenizer.

    A model loaded from GGUF refuses ``save_pretrained`` (it carries a gguf quantization config), so the
    weights move into a fresh model built from the same config without it."""
    global conversions
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                      local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise MijaError(f"{gguf_path}: transformers cannot read this GGUF file ({exc}); "
                        "its architecture may be unsupported: try llama-cpp-python") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # assign=True moves the loaded tensors in instead of copying them: one copy of the weights in memory.
    fresh.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    out.mkdir(parents=True)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    conversions += 1


def _remove_stale_temps(root: Path, label: str, older_than_s: float = 3600.0) -> None:
    """Temporary folders of conversions that were killed (an hour old: no live conversion takes that)."""
    for temp in root.glob(f".tmp-{label}-*"):
        try:
            if time.time() - temp.stat().st_mtime > older_than_s:
                shutil.rmtree(temp, ignore_errors=True)
        except OSError:
            pass


def _label(path: Path) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-") or "model"


class GGUFTransformersBackend(TransformersBackend):
    """A GGUF file served by transformers after a one-time conversion (cache key: the file's sha256)."""

    def __init__(self, gguf_path: Path, **kwargs: Any):
        super().__init__(None, **kwargs)
        self.gguf_path = gguf_path

    def model_source(self) -> Path:
        if not self.gguf_path.is_file():
            raise MijaError(f"{self.spec}: no such GGUF file '{self.gguf_path}'")
        return converted_model_dir(self.gguf_path, sha256_file(self.gguf_path), _label(self.gguf_path))


class LlamaCppBackend(Backend):
    """A GGUF file run by llama.cpp. One model instance is not thread-safe, so calls go through a
    single-thread executor; the default concurrency is small for the same reason."""

    adaptive_concurrency = False  # it batches locally: keep its queue full (see Backend)

    default_concurrency = 2

    def __init__(self, gguf_path: Path, *, name: str, spec: str, n_ctx: int = 4096,
                 n_threads: int | None = None, n_gpu_layers: int = 0):
        self.gguf_path, self.name, self.spec = gguf_path, name, spec
        self.n_ctx, self.n_threads, self.n_gpu_layers = n_ctx, n_threads, n_gpu_layers
        self.llm: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mijabench-llamacpp")
        self._template: Any = None
        self._thinking_switch = False

    def load(self) -> None:
        if self.llm is not None:
            return
        if not self.gguf_path.is_file():
            raise MijaError(f"{self.spec}: no such GGUF file '{self.gguf_path}'")
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(self.gguf_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                         n_gpu_layers=self.n_gpu_layers, verbose=False)
        source = (getattr(self.llm, "metadata", None) or {}).get("tokenizer.chat_template")
        if source:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            # The same environment transformers renders chat templates in.
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=["jinja2.ext.loopcontrols"])
            env.globals["raise_exception"] = _raise_template_error
            self._template = env.from_string(source)
            self._thinking_switch = "enable_thinking" in source

    @property
    def supports_prefix(self) -> bool:  # type: ignore[override]
        self.load()
        return self._template is not None

    async def check(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    async def generate(self, request: GenerationRequest) -> Generation:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._generate, request)

    def _generate(self, request: GenerationRequest) -> Generation:
        self.load()
        s = request.settings
        sampling = dict(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
                        top_k=0, min_p=0.0, repeat_penalty=1.0)  # plain top-p sampling, as elsewhere
        messages = with_system_prompt(request.messages, s.system_prompt)
        # llama.cpp's chat API cannot pass enable_thinking, so templates with a thinking switch (and every
        # prefix) are rendered here and sent as raw completion tokens.
        own_render = request.prefix is not None or self._thinking_switch
        start = time.monotonic()
        try:
            if own_render:
                prompt = self.render(messages, prefix=request.prefix, thinking=s.thinking)
                tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
                reply = self.llm.create_completion(prompt=tokens, **sampling)
                choice = reply["choices"][0]
                text = choice.get("text") or ""
            else:
                reply = self.llm.create_chat_completion(messages=messages, **sampling)
                choice = reply["choices"][0]
                text = choice["message"].get("content") or ""
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.name}: llama.cpp failed ({exc})", retryable=False,
                               kind=ErrorKind.LOCAL_ERROR) from exc
        usage = reply.get("usage") or {}
        return Generation(text=text, prompt_tokens=usage.get("prompt_tokens"),
                          completion_tokens=usage.get("completion_tokens"),
                          finish_reason=choice.get("finish_reason"), latency_s=time.monotonic() - start)

    def render(self, messages: Messages, prefix: str | None = None, thinking: bool = False) -> str:
        """The file's chat template rendered as transformers would: with the generation prompt, or, given a
        prefix, up to and including the prefix with the assistant turn left open. The prefix is rendered
        followed by a marker and cut at the marker, so whatever the template writes after a message
        (end-of-turn tokens) is dropped."""
        if self._template is None:
            raise BackendError(f"{self.name}: this GGUF file has no chat template, so prefix injection is "
                               "not possible; use the transformers path (option runtime: transformers) "
                               "or a model with a template", retryable=False,
                               kind=ErrorKind.PREFIX_UNSUPPORTED)
        marker = "\x00MIJABENCH_PREFIX_END\x00"
        if prefix is not None:
            messages = [*messages, {"role": "assistant", "content": prefix + marker}]
        rendered = self._template.render(
            messages=messages, add_generation_prompt=prefix is None, enable_thinking=thinking,
            bos_token=self._token_text(self.llm.token_bos()),
            eos_token=self._token_text(self.llm.token_eos()))
        if prefix is None:
            return rendered
        if marker not in rendered:
            raise BackendError(f"{self.name}: the chat template drops the assistant prefix", retryable=False,
                               kind=ErrorKind.PREFIX_UNSUPPORTED)
        return rendered[:rendered.index(marker)]

    def _token_text(self, token_id: int) -> str:
        if token_id is None or token_id < 0:
            return ""
        return self.llm.detokenize([token_id], special=True).decode("utf-8", "ignore")

    async def aclose(self) -> None:
        def release() -> None:
            if self.llm is not None and hasattr(self.llm, "close"):
                self.llm.close()
            self.llm = None

        await asyncio.get_running_loop().run_in_executor(self._executor, release)
        self._executor.shutdown(wait=True)

    def info(self) -> dict[str, Any]:
        self.load()
        meta = getattr(self.llm, "metadata", None) or {}
        return {"family": meta.get("general.architecture"), "runtime": "llama.cpp",
                "file": self.gguf_path.name}


def _raise_template_error(message: str):
    raise BackendError(f"chat template: {message}", retryable=False, kind=ErrorKind.TEMPLATE_ERROR)


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def create_gguf_backend(config) -> Backend:
    """``gguf:PATH``. Option ``runtime``: auto (llama.cpp when installed), llama_cpp, or transformers.
    llama.cpp options: n_ctx, n_threads, n_gpu_layers; transformers options as in transformers_local."""
    path = Path(config.target).expanduser()
    options = dict(config.options)
    runtime = options.pop("runtime", "auto")
    if runtime not in {"auto", "llama_cpp", "transformers"}:
        raise MijaError(f"{config.spec}: option runtime must be auto, llama_cpp or transformers")
    if not path.is_file():
        raise MijaError(f"{config.spec}: no such GGUF file '{path}'")
    if runtime == "llama_cpp" or (runtime == "auto" and llama_cpp_available()):
        if not llama_cpp_available():
            raise MijaError(f"{config.spec}: runtime llama_cpp needs llama-cpp-python "
                            "(pip install llama-cpp-python)")
        known = {"n_ctx", "n_threads", "n_gpu_layers"}
        unknown = set(options) - known
        if unknown:
            raise MijaError(f"{config.spec}: unknown llama.cpp option(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(known))})")
        backend: Backend = LlamaCppBackend(path, name=config.name, spec=config.spec, **options)
        if config.concurrency:
            backend.default_concurrency = config.concurrency
        return backend
    from dataclasses import replace

    return GGUFTransformersBackend(
        path, name=config.name, spec=config.spec, concurrency=config.concurrency, family=config.family,
        params_b=config.params_b, **local_backend_options(replace(config, options=options)))
