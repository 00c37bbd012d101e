"""``DPORunConfig``: every knob of a DPO run in one dataclass, loadable from YAML (``yaml.safe_load``) and
written beside the trained adapter, in the way TRL keeps a config class beside each trainer.

Defaults are for the paper-scale run (a 1B instruct model, LoRA, one epoch); the CPU test and benchmark
override lengths and steps. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError


@dataclass
class DPORunConfig:
    # DPO
    beta: float = 0.1
    loss_type: str = "sigmoid"
    # optimisation
    learning_rate: float = 5e-5
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4
    grad_accumulation: int = 4
    warmup_ratio: float = 0.1
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 0
    # what is trained
    full_finetune: bool = False  # False: a LoRA adapter on a frozen base
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # lengths, in tokens
    max_length: int = 1024  # prompt + answer; pairs whose prompt alone fills it are dropped by TRL
    # machine
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool | None = None  # None: on when the GPU supports it, off on CPU
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    save_steps: int = 0  # 0: no intermediate checkpoints

    def check(self, source: str = "config") -> DPORunConfig:
        def bad(name: str, why: str) -> InputError:
            return InputError(why, file=source, field=name)

        for name in ("beta", "learning_rate"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        if self.max_steps <= 0 and not self.epochs > 0:
            raise bad("epochs", "must be > 0 when max_steps is not set")
        for name in ("batch_size", "grad_accumulation", "lora_r", "lora_alpha", "max_length",
                     "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", "must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise bad("device", "must be auto, cpu or cuda")
        if self.bf16 is not None and not isinstance(self.bf16, bool):
            raise bad("bf16", "must be true, false or left unset")
        if not self.lora_target_modules:
            raise bad("lora_target_modules", "name at least one module (e.g. q_proj)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DPORunConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(known)})",
                             file=source)
        values = {}
        for name, value in data.items():
            default = getattr(cls(), name)
            values[name] = _coerce(value, default, name, source)
        return cls(**values).check(source)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> DPORunConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError("no such config file", file=str(path))
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", file=str(path)) from None
        if not isinstance(data, dict):
            raise InputError("expected a mapping of settings", file=str(path))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, str(path))

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _coerce(value: Any, default: Any, name: str, source: str) -> Any:
    """YAML gives ints for floats (``epochs: 1``) and strings for scientific notation without a dot
    (``5e-5``); accept both, refuse anything else of the wrong type."""
    if value is None or default is None:
        return value
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if isinstance(default, list):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise TypeError
            return [str(v) for v in value]
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise InputError(f"expected {type(default).__name__}, got {value!r}", file=source,
                         field=name) from None
    return value
