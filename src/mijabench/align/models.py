"""Where training and evaluation get their models: model strings resolved to a local folder or hub id, the
model and tokenizer loaded for training or scoring, and a transformers backend with a trained adapter.

``local:smollm2-135m`` is the embedded model's converted folder (``backends.embedded.embedded_model_dir``);
``hf:PATH_OR_ID`` is a local folder or a hub id; a bare existing folder is accepted too. Trainers load from a
folder path, never by a hub name the model config happens to carry (TRL reloads a reference model by name
when it is not given one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends.transformers_local import TransformersBackend
from ..errors import MijaError

ADAPTER_DIR = "adapter"  # inside a training output: the LoRA adapter
MODEL_DIR = "model"  # inside a training output: a fully fine-tuned model


def resolve_base(spec: str) -> str:
    """A model string (or YAML model file, or folder) -> what ``from_pretrained`` should load."""
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser())
    from ..backends.registry import parse_model

    config = parse_model(spec)
    if config.scheme == "local":
        from ..backends.embedded import EMBEDDED_NAME, EMBEDDED_SPEC, embedded_model_dir

        if config.target != EMBEDDED_NAME:
            raise MijaError(f"--base {spec}: unknown local model (the embedded one is {EMBEDDED_SPEC})")
        return str(embedded_model_dir())
    if config.scheme == "hf":
        target = config.target
        looks_local = target.startswith(("/", ".", "~"))
        if looks_local and not Path(target).expanduser().is_dir():
            raise MijaError(f"--base {spec}: no such model folder")
        return str(Path(target).expanduser()) if looks_local else target
    raise MijaError(f"--base {spec}: training and evaluation need transformers weights: use "
                    "local:smollm2-135m, hf:PATH_OR_HUB_ID or a model folder")


def pick_device(option: str = "auto") -> str:
    import torch

    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise MijaError(f"device '{option}' asked for, but no CUDA GPU is available")
    return option


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    local = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise MijaError(f"{source}: cannot load the tokenizer ({_first_line(exc)})") from exc
    if not tokenizer.chat_template:
        raise MijaError(f"{source}: the tokenizer has no chat template (align trains chat models)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(source: str, *, dtype: Any = None, device: str = "cpu"):
    """The model in eval mode on ``device``; errors become one line."""
    import torch
    from transformers import AutoModelForCausalLM

    local = Path(source).is_dir()
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32,
                                                     local_files_only=local)
    except (OSError, ValueError) as exc:
        raise MijaError(f"{source}: cannot load the model ({_first_line(exc)}); give a local folder, or "
                        "a hub id on a machine with network access") from exc
    return model.to(device).eval()


def load_with_adapter(source: str, adapter: str | Path, *, device: str = "cpu", dtype: Any = None):
    """Base model with a PEFT adapter attached (not merged), so the adapter can be switched off with
    ``model.disable_adapter()`` to score the reference model."""
    from peft import PeftModel

    base = load_causal_lm(source, dtype=dtype, device=device)
    try:
        return PeftModel.from_pretrained(base, str(adapter)).eval()
    except (OSError, ValueError) as exc:
        raise MijaError(f"{adapter}: cannot load the adapter ({_first_line(exc)})") from exc


def trained_weights(path: str | Path) -> tuple[str, Path]:
    """What a training output (or a folder given directly) holds: ("adapter", folder) for a LoRA adapter,
    ("model", folder) for a fully fine-tuned model."""
    path = Path(path)
    for kind, folder, marker in (("adapter", path / ADAPTER_DIR, "adapter_config.json"),
                                 ("adapter", path, "adapter_config.json"),
                                 ("model", path / MODEL_DIR, "config.json"),
                                 ("model", path, "config.json")):
        if (folder / marker).is_file():
            return kind, folder
    raise MijaError(f"{path}: no trained adapter or model here (expected {ADAPTER_DIR}/adapter_config.json "
                    f"or {MODEL_DIR}/config.json from `mijabench align dpo`)")


class AdaptedBackend(TransformersBackend):
    """The transformers backend with a LoRA adapter merged into the base weights after loading: generation
    runs at the base model's speed, through the same batching, templates and sampling as every other run."""

    def __init__(self, source: str, adapter: str | Path, **kwargs: Any):
        super().__init__(source, **kwargs)
        self.adapter = Path(adapter)
        self._adapted = False
        import threading

        self._adapter_lock = threading.Lock()

    def load(self) -> None:
        with self._adapter_lock:  # every load goes through here, so nobody sees the unmerged model
            if self._adapted:
                return
            super().load()
            from peft import PeftModel

            try:
                merged = PeftModel.from_pretrained(self.model, str(self.adapter)).merge_and_unload()
            except (OSError, ValueError) as exc:
                raise MijaError(f"{self.adapter}: cannot load the adapter ({_first_line(exc)})") from exc
            self.model = merged.eval()
            self._adapted = True

    def info(self) -> dict[str, Any]:
        return {**super().info(), "adapter": str(self.adapter)}

    async def aclose(self) -> None:
        await super().aclose()
        self._adapted = False  # the model is gone; a later load merges again


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
