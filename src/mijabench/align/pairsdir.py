"""The pairs folder on disk, written whole or not at all, and read back with every problem named.

Layout::

    train.jsonl      training pairs (prompt, chosen, rejected + group, language, strategy, provenance)
    test.jsonl       pairs of the evaluation prompts (for preference margins on unseen prompts)
    eval.jsonl       evaluation prompts, flagged group_seen / strategy_seen
    benign.jsonl     benign controls (over-refusal)
    split.json       the split: held-out groups and strategies, which never appear in train.jsonl
    manifest.json    counts and the options used
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, MijaError
from .corpus import replace_dir
from .pairs import PairSet

FILES = {"train": "train.jsonl", "test": "test.jsonl", "eval_prompts": "eval.jsonl", "benign": "benign.jsonl"}
REQUIRED_FIELDS = {
    "train": ("prompt", "chosen", "rejected", "group", "language", "strategy"),
    "test": ("prompt", "chosen", "rejected", "group", "language", "strategy"),
    "eval_prompts": ("item_id", "prompt", "group", "language", "strategy", "group_seen", "strategy_seen"),
    "benign": ("id", "prompt", "group", "language"),
}


def write_pairs(pairset: PairSet, out: str | Path) -> Path:
    """Write the folder next to ``out`` and move it into place; an existing pairs folder is replaced, any
    other non-empty folder is refused (nothing of the user's is deleted)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists())):
        raise MijaError(f"{out}: exists and is not a pairs folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for attr, name in FILES.items():
        with open(staging / name, "w", encoding="utf-8") as fh:
            for row in getattr(pairset, attr):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    for name, data in (("split.json", pairset.split), ("manifest.json", pairset.manifest)):
        (staging / name).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    replace_dir(staging, out)
    return out


def iter_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) per non-blank line; a bad line or a missing field is an InputError
    naming the file, row and field."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg})", file=str(path), row=number) from None
            if not isinstance(row, dict):
                raise InputError("expected a JSON object", file=str(path), row=number)
            for name in required:
                if name not in row:
                    raise InputError("missing", file=str(path), row=number, field=name)
            yield number, row


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path, required)]


def load_pairs(folder: str | Path) -> PairSet:
    folder = Path(folder)
    if not folder.is_dir():
        raise MijaError(f"{folder}: no such pairs folder (build one with `mijabench align pairs`)")
    parts: dict[str, Any] = {}
    for attr, name in FILES.items():
        path = folder / name
        if not path.is_file():
            raise InputError("missing from the pairs folder (rebuild it with `mijabench align pairs`)",
                             file=str(path))
        parts[attr] = read_jsonl(path, REQUIRED_FIELDS[attr])
    for name in ("split.json", "manifest.json"):
        path = folder / name
        try:
            parts[name] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("missing from the pairs folder", file=str(path)) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg})", file=str(path)) from None
    return PairSet(parts["train"], parts["test"], parts["eval_prompts"], parts["benign"], parts["split.json"],
                   parts["manifest.json"])


def pairs_fingerprint(folder: str | Path) -> dict[str, str]:
    """SHA-256 of each pairs file: recorded with a training run so its data can be recognized later."""
    folder = Path(folder)
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in (*FILES.values(), "split.json") if (folder / name).exists()}


def make_pairs(store, out: str | Path, options, *, benign_source: str | Path | None = None,
               chosen_model: str | None = None, judges: list[str] | None = None) -> PairSet:
    """The whole ``align pairs`` step: judged corpus from the store -> (optional model-written refusals)
    -> pairs, split, benign controls -> ``out``."""
    from .controls import benign_controls
    from .corpus import judged_rows
    from .pairs import build_pairs, collect_prompts, groups_by_language

    options = options.check()
    rows = judged_rows(store, judges)
    prompts = collect_prompts(rows)
    refusals = None
    if chosen_model:
        from .refusals import model_refusals

        need = {i: p.prompt for i, p in prompts.items() if p.harmful and not p.safe}
        refusals = model_refusals(need, chosen_model)
    groups = groups_by_language({"language": p.language, "group": p.group} for p in prompts.values())
    benign = benign_controls(groups, options.benign_per_group, options.seed, benign_source)
    pairset = build_pairs(rows, options, model_refusals=refusals.answers if refusals else None, benign=benign)
    pairset.manifest["benign_source"] = str(benign_source) if benign_source else "built-in"
    if refusals:
        pairset.manifest["chosen_model"] = refusals.summary()
    pairset.manifest["store"] = str(store.path)
    write_pairs(pairset, out)
    return pairset
