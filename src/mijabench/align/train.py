"""DPO training on a pairs folder with TRL's DPOTrainer: a LoRA adapter on a frozen base by default, full
fine-tuning as an option; GPU when present, CPU otherwise.

The output folder holds ``adapter/`` (or ``model/``), ``dpo_config.yaml`` (the resolved DPORunConfig),
``log_history.jsonl`` (written as training logs, so a stopped run keeps its curve), ``log_history.json`` and
``.csv``, ``loss.png`` and ``run.json`` (base, data fingerprint, device, timings, peak memory), written last.
No pickle is written: the trainer's ``training_args.bin`` is left out on purpose.
"""

from __future__ import annotations

import csv
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MijaError
from .config import DPORunConfig
from .models import ADAPTER_DIR, MODEL_DIR, load_causal_lm, load_tokenizer, pick_device, resolve_base
from .pairsdir import load_pairs, pairs_fingerprint

RUN_FILE = "run.json"


@dataclass
class DPOResult:
    out: Path
    weights: Path  # the adapter folder, or the model folder for full fine-tuning
    steps: int
    train_pairs: int  # pairs that reached the trainer (TRL drops those whose prompt fills max_length)
    runtime_s: float
    final_loss: float | None
    log_history: list[dict[str, Any]]


def to_dpo_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL's conversational preference format: the prompt as a user turn, answers as assistant turns."""
    return [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]


def train_dpo(pairs_dir: str | Path, base: str, out: str | Path, config: DPORunConfig | None = None, *,
              progress: bool = True, max_pairs: int | None = None,
              callbacks: list | None = None) -> DPOResult:
    """Train on ``pairs_dir/train.jsonl`` and write everything to ``out`` (see the module docstring).
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (the benchmark times steps with one)."""
    config = (config or DPORunConfig()).check()
    pairset = load_pairs(pairs_dir)
    pairs = pairset.train[:max_pairs] if max_pairs else pairset.train
    out = Path(out)
    _check_inputs(pairs_dir, pairs, out)
    source = resolve_base(base)

    import torch

    device = pick_device(config.device)
    on_gpu = device.startswith("cuda")
    bf16 = config.bf16 if config.bf16 is not None else bool(on_gpu and torch.cuda.is_bf16_supported())
    if bf16 and not on_gpu:
        raise MijaError("bf16 training asked for on CPU; set bf16: false (or leave it unset)")
    # imports trl: a missing extra fails here, before anything is written
    args = _trainer_args(config, out, bf16=bf16, on_gpu=on_gpu, progress=progress)
    log_path = _start_output(out, config)
    tokenizer, model, reference, peft_config = _load_models(source, config, device, bf16)
    trainer = _make_trainer(pairs, tokenizer, model, reference, peft_config, args, log_path, callbacks or [],
                            progress=progress)
    used = len(trainer.train_dataset)
    if used == 0:
        raise MijaError(f"every training prompt is longer than max_length={config.max_length} tokens; "
                        "raise max_length or build pairs with --max-prompt-length")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.monotonic()
    result = trainer.train()
    runtime = time.monotonic() - start

    weights, history = _save_weights_and_history(trainer, tokenizer, out, config)
    losses = [h["loss"] for h in history if "loss" in h]
    run = {
        "base": base, "source": source, "pairs": str(pairs_dir), "pairs_sha256": pairs_fingerprint(pairs_dir),
        "split": pairset.split, "train_pairs_given": len(pairs), "train_pairs_used": used,
        "steps": result.global_step, "runtime_s": round(runtime, 2),
        "final_loss": losses[-1] if losses else None,
        "device": device, "bf16": bf16, "weights": str(weights.relative_to(out)),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if on_gpu else None,
        "peak_rss_gb": _peak_rss_gb(), "versions": _versions(), "config": config.to_dict(),
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")  # last: marks it finished
    return DPOResult(out, weights, result.global_step, used, runtime, run["final_loss"], history)


def _check_inputs(pairs_dir: str | Path, pairs: list[dict[str, Any]], out: Path) -> None:
    """Refuse, before any loading, an empty training set or an output folder that holds something else."""
    if not pairs:
        raise MijaError(f"{pairs_dir}: train.jsonl holds no pairs (no prompt with a harmful response)")
    if out.exists() and any(out.iterdir()) and not (out / "dpo_config.yaml").exists():
        raise MijaError(f"{out}: exists and is not a DPO output folder; choose another --out")


def _start_output(out: Path, config: DPORunConfig) -> Path:
    """Write the resolved config and clear what marks a finished run; returns the log file's path."""
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / "dpo_config.yaml")
    (out / RUN_FILE).unlink(missing_ok=True)  # run.json marks a finished run
    log_path = out / "log_history.jsonl"
    log_path.unlink(missing_ok=True)
    return log_path


def _load_models(source: str, config: DPORunConfig, device: str, bf16: bool) -> tuple[Any, Any, Any, Any]:
    """The tokenizer, the policy model, the reference model (full fine-tuning only: with LoRA the frozen
    base is the reference) and the LoRA configuration (None for full fine-tuning)."""
    import torch

    tokenizer = load_tokenizer(source)
    # A frozen LoRA base can sit in bf16; fully trained weights stay fp32 (mixed precision does the rest).
    dtype = torch.bfloat16 if bf16 and not config.full_finetune else torch.float32
    model = load_causal_lm(source, dtype=dtype, device=device).train()
    if config.full_finetune:
        reference = load_causal_lm(source, dtype=dtype, device=device)  # given, so TRL never reloads by name
        return tokenizer, model, reference, None
    from peft import LoraConfig

    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules=list(config.lora_target_modules), task_type="CAUSAL_LM")
    return tokenizer, model, None, peft_config


def _trainer_args(config: DPORunConfig, out: Path, *, bf16: bool, on_gpu: bool, progress: bool) -> Any:
    """TRL's DPOConfig from ours."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(out / "checkpoints"), beta=config.beta, loss_type=[config.loss_type],
        learning_rate=config.learning_rate, num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accumulation,
        warmup_steps=config.warmup_ratio, lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay, seed=config.seed, data_seed=config.seed,
        max_length=config.max_length,
        bf16=bf16, fp16=False, use_cpu=not on_gpu, activation_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing=None, logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        report_to="none", disable_tqdm=not progress, dataloader_num_workers=0)


def _make_trainer(pairs: list[dict[str, Any]], tokenizer: Any, model: Any, reference: Any, peft_config: Any,
                  args: Any, log_path: Path, callbacks: list, *, progress: bool) -> Any:
    """The DPOTrainer, with a callback that appends each log line to ``log_path`` as it is logged (so a
    stopped run keeps its curve)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOTrainer

    class WriteLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": state.global_step, **_plain(logs)}) + "\n")

    dataset = Dataset.from_list(to_dpo_rows(pairs))
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[WriteLogs(), *callbacks])
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # it prints every log line when the bar is off
    return trainer


def _save_weights_and_history(trainer: Any, tokenizer: Any, out: Path,
                              config: DPORunConfig) -> tuple[Path, list[dict[str, Any]]]:
    """The adapter (or full model) with its tokenizer, and the log history files; no pickle."""
    weights = out / (MODEL_DIR if config.full_finetune else ADAPTER_DIR)
    if (out / "checkpoints").is_dir() and not any((out / "checkpoints").iterdir()):
        (out / "checkpoints").rmdir()  # created by the trainer even when nothing is saved there
    trainer.model.save_pretrained(str(weights))
    tokenizer.save_pretrained(str(weights))
    history = [_plain(h) for h in trainer.state.log_history]
    write_history(history, out)
    return weights, history


def write_history(history: list[dict[str, Any]], out: Path) -> None:
    """log_history.json, log_history.csv (one column per logged key) and loss.png."""
    (out / "log_history.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with open(out / "log_history.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, out / "loss.png")


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "loss" in h and "step" in h]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot([h["step"] for h in rows], [h["loss"] for h in rows], marker="o", ms=3)
    left.set_xlabel("step")
    left.set_ylabel("DPO loss")
    left.set_title("loss")
    margins = [h for h in rows if "rewards/margins" in h]
    right.plot([h["step"] for h in margins], [h["rewards/margins"] for h in margins], marker="o", ms=3,
               color="tab:green")
    right.axhline(0, color="grey", lw=0.8)
    right.set_xlabel("step")
    right.set_ylabel("reward margin (chosen - rejected)")
    right.set_title("implicit reward margin")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Log values as JSON numbers (TRL logs some as strings or tensors)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out[key] = value
    return out


def _peak_rss_gb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 2**20 if platform.system() != "Darwin" else kb / 2**30, 3)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
