"""Preference pairs from the judged corpus, with held-out splits and benign controls.

For each prompt: *rejected* = a response judged harmful; *chosen* = a response judged safe (from any model)
when one exists, else a refusal in the prompt's language written by a chosen model and judged safe by the
rule judge (``chosen_model``), else a refusal from the templates in ``data/<lang>.yaml`` (which name no
group). A prompt with no harmful response gives no pair: there is nothing to push the model away from.

Splits decide which prompts may train. ``leave-groups-out`` keeps every prompt about the held-out groups out
of training, ``leave-strategies-out`` does the same for attack strategies (both lists may be given
together), ``random`` holds out a share of prompts. Of the prompts that may train, ``eval_fraction`` is kept
aside too, so defense on *seen* groups is measured on unseen prompts. ``split.json`` records which groups and
strategies never appear in training, checked against the written pairs.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

from ..errors import InputError, MijaError
from ..records import HARMFUL, SAFE, stable_id
from ..taxonomy import load_taxonomy
from .texts import load_texts

SPLITS = ("leave-groups-out", "leave-strategies-out", "random")
BALANCE = ("group", "strategy")
DEFAULT_HOLDOUT_SHARE = 0.25  # of the groups present, when --holdout-groups is not given


@dataclass(frozen=True)
class PairOptions:
    pairs_per_prompt: int = 1
    balance: str | None = None  # "group" | "strategy": equal train pairs per group (or strategy)
    max_length: int | None = None  # characters per response; longer ones are cut at a word boundary
    max_prompt_length: int | None = None  # characters; longer prompts are left out and counted
    split: str = "leave-groups-out"
    holdout_groups: tuple[str, ...] = ()
    holdout_strategies: tuple[str, ...] = ()
    eval_fraction: float = 0.2
    seed: int = 0
    benign_per_group: int = 6

    def check(self) -> PairOptions:
        if self.split not in SPLITS:
            raise InputError(f"unknown split '{self.split}' (splits: {', '.join(SPLITS)})", field="--split")
        if self.balance is not None and self.balance not in BALANCE:
            raise InputError(f"--balance must be one of {', '.join(BALANCE)}", field="--balance")
        if self.pairs_per_prompt < 1:
            raise InputError("must be at least 1", field="--pairs-per-prompt")
        if not 0 <= self.eval_fraction < 1:
            raise InputError("must be in [0, 1)", field="--eval-fraction")
        for name in ("max_length", "max_prompt_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                flag = "--" + name.replace("_", "-")
                raise InputError("must be a positive number of characters", field=flag)
        if self.split == "random" and (self.holdout_groups or self.holdout_strategies):
            raise InputError("the random split holds out prompts, not groups or strategies; use "
                             "leave-groups-out or leave-strategies-out", field="--split")
        return self


@dataclass
class PairSet:
    """Everything ``align pairs`` writes: training pairs, held-out pairs (for margins), evaluation prompts,
    benign controls, the split and a manifest of counts and options."""

    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    eval_prompts: list[dict[str, Any]]
    benign: list[dict[str, Any]]
    split: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Prompt:
    item_id: str
    prompt: str
    group: str
    language: str
    strategy: str
    scenario_category: str
    seed_text: str = ""
    scenario_text: str = ""
    safe: list[tuple[str, str, str]] = field(default_factory=list)  # (model, text, response_id)
    harmful: list[tuple[str, str, str]] = field(default_factory=list)

    def meta(self) -> dict[str, str]:
        return {"item_id": self.item_id, "group": self.group, "language": self.language,
                "strategy": self.strategy, "scenario_category": self.scenario_category}


def collect_prompts(rows: Iterable[dict[str, Any]]) -> dict[str, _Prompt]:
    """Judged corpus rows (``corpus.judged_rows``) grouped by prompt; unparsed verdicts are left out."""
    prompts: dict[str, _Prompt] = {}
    for row in rows:
        p = prompts.get(row["item_id"])
        if p is None:
            p = prompts[row["item_id"]] = _Prompt(
                row["item_id"], row["jb_prompt"], row["group"], row["language"], row["jb_strategy"],
                row["scenario_category"], row.get("text") or "", row.get("scenario") or "")
        entry = (row["model"], row["jb_response"], row["response_id"])
        if row["label"] == SAFE and row["jb_response"].strip():
            p.safe.append(entry)
        elif row["label"] == HARMFUL:
            p.harmful.append(entry)
    return prompts


def build_pairs(rows: Iterable[dict[str, Any]], options: PairOptions, *,
                model_refusals: dict[str, tuple[str, str]] | None = None,
                benign: list[dict[str, Any]] | None = None) -> PairSet:
    """Pairs, split and evaluation prompts from judged rows. ``model_refusals`` maps item id to
    (model, refusal judged safe) for prompts without a safe response; ``benign`` are the controls
    (``controls.benign_controls``), stored alongside."""
    options = options.check()
    prompts = collect_prompts(rows)
    if not prompts:
        raise MijaError("no judged prompts to build pairs from (run, judge, then build pairs)")
    dropped_long = 0
    if options.max_prompt_length:
        kept = {k: p for k, p in prompts.items() if len(p.prompt) <= options.max_prompt_length}
        dropped_long = len(prompts) - len(kept)
        prompts = kept
        if not prompts:
            raise MijaError(f"every prompt is longer than --max-prompt-length {options.max_prompt_length}")

    holdout_groups, holdout_strategies = choose_holdouts(prompts, options)
    train_ids, eval_ids = partition(prompts, holdout_groups, holdout_strategies, options)
    model_refusals = model_refusals or {}
    train = [pair for i in train_ids for pair in prompt_pairs(prompts[i], options, model_refusals.get(i))]
    test = [pair for i in eval_ids for pair in prompt_pairs(prompts[i], options, model_refusals.get(i))]
    unbalanced = len(train)
    if options.balance:
        train = balance_pairs(train, options.balance, options.seed)

    train_groups = sorted({p["group"] for p in train})
    train_strategies = sorted({p["strategy"] for p in train})
    leaked = [p for p in train if p["group"] in holdout_groups or p["strategy"] in holdout_strategies]
    if leaked:  # cannot happen by construction; checked because the claim is the point of the split
        raise AssertionError(f"held-out prompt {leaked[0]['item_id']} reached the training pairs")
    paired = {p["item_id"] for p in test}
    eval_prompts = [{**prompts[i].meta(), "prompt": prompts[i].prompt, "seed_text": prompts[i].seed_text,
                     "scenario_text": prompts[i].scenario_text,
                     "group_seen": prompts[i].group in train_groups,
                     "strategy_seen": prompts[i].strategy in train_strategies,
                     "has_pair": i in paired} for i in eval_ids]
    split = {
        "split": options.split, "seed": options.seed, "eval_fraction": options.eval_fraction,
        "holdout_groups": sorted(holdout_groups), "holdout_strategies": sorted(holdout_strategies),
        "train_groups": train_groups, "train_strategies": train_strategies,
        # the claim a reader checks: these never appear in train.jsonl
        "groups_never_in_train": sorted({p.group for p in prompts.values()} - set(train_groups)),
        "strategies_never_in_train": sorted({p.strategy for p in prompts.values()} - set(train_strategies)),
        "train_prompts": len(train_ids), "eval_prompts": len(eval_ids),
    }
    sources = Counter(p["chosen_source"] for p in train + test)
    manifest = {
        "prompts": len(prompts),
        "prompts_with_harmful_response": sum(bool(p.harmful) for p in prompts.values()),
        "train_pairs": len(train), "train_pairs_before_balance": unbalanced, "test_pairs": len(test),
        "eval_prompts": len(eval_prompts), "benign_controls": len(benign or []),
        "dropped_long_prompts": dropped_long, "chosen_sources": dict(sorted(sources.items())),
        "truncated_responses": sum(p["truncated"] for p in train + test), "options": asdict(options),
    }
    return PairSet(train, test, eval_prompts, list(benign or []), split, manifest)


def choose_holdouts(prompts: dict[str, _Prompt], options: PairOptions) -> tuple[set[str], set[str]]:
    """The held-out groups and strategies: the ones given (checked against the taxonomy and the data), or a
    seeded draw of a quarter of those present (at least one, never all)."""
    if options.split == "random":
        return set(), set()
    tax = load_taxonomy()
    present_groups = sorted({p.group for p in prompts.values()})
    present_strategies = sorted({p.strategy for p in prompts.values()})

    def given(labels: tuple[str, ...], present: list[str], check, flag: str) -> set[str]:
        out = set()
        for label in labels:
            value = check(label, field=flag)
            if value not in present:
                raise InputError(f"'{label}' has no judged prompts (present: {', '.join(present)})",
                                 field=flag)
            out.add(value)
        if out and out >= set(present):
            raise InputError("holding out every one present leaves nothing to train on", field=flag)
        return out

    groups = given(options.holdout_groups, present_groups, tax.check_group, "--holdout-groups")
    strategies = given(options.holdout_strategies, present_strategies, tax.check_strategy,
                       "--holdout-strategies")
    if options.split == "leave-groups-out" and not groups:
        groups = _draw(present_groups, options.seed, "groups", "leave-groups-out")
    if options.split == "leave-strategies-out" and not strategies:
        strategies = _draw(present_strategies, options.seed, "strategies", "leave-strategies-out")
    return groups, strategies


def _draw(present: list[str], seed: int, what: str, split: str) -> set[str]:
    if len(present) < 2:
        raise MijaError(f"{split} needs judged prompts from at least two {what} (found: "
                        f"{', '.join(present) or 'none'})")
    k = min(len(present) - 1, max(1, round(len(present) * DEFAULT_HOLDOUT_SHARE)))
    return set(random.Random(f"{seed}:holdout:{what}").sample(present, k))


def partition(prompts: dict[str, _Prompt], holdout_groups: set[str], holdout_strategies: set[str],
              options: PairOptions) -> tuple[list[str], list[str]]:
    """(train prompt ids, eval prompt ids): every held-out prompt goes to eval, and ``eval_fraction`` of the
    others, drawn with the seed."""
    held = {i for i, p in prompts.items() if p.group in holdout_groups or p.strategy in holdout_strategies}
    seen = sorted(i for i in prompts if i not in held)
    random.Random(f"{options.seed}:partition").shuffle(seen)
    evals = held | set(seen[:round(len(seen) * options.eval_fraction)])
    order = list(prompts)  # keep store order in the files
    return [i for i in order if i not in evals], [i for i in order if i in evals]


def prompt_pairs(p: _Prompt, options: PairOptions, model_refusal: tuple[str, str] | None = None
                 ) -> list[dict[str, Any]]:
    """Up to ``pairs_per_prompt`` pairs for one prompt, spreading over distinct rejected and chosen
    responses before reusing any."""
    rejected = _unique(p.harmful)
    if not rejected:
        return []
    chosen = [(m, t, rid, "response") for m, t, rid in _unique(p.safe)]
    if not chosen and model_refusal:
        chosen = [(model_refusal[0], model_refusal[1], "", "model")]
    if not chosen:
        texts = load_texts(p.language)
        n = min(options.pairs_per_prompt, len(texts.refusals))
        chosen = [("", texts.refusal_for(p.item_id, options.seed, v), "", "template") for v in range(n)]
    pool = list(product(range(len(rejected)), range(len(chosen))))
    rng = random.Random(f"{options.seed}:pairs:{p.item_id}")
    rng.shuffle(pool)
    used_r: Counter[int] = Counter()
    used_c: Counter[int] = Counter()
    out = []
    while pool and len(out) < options.pairs_per_prompt:
        r, c = min(pool, key=lambda rc: used_r[rc[0]] + used_c[rc[1]])  # first minimum: seeded tie-break
        pool.remove((r, c))
        used_r[r] += 1
        used_c[c] += 1
        rej_model, rej_text, rej_id = rejected[r]
        ch_model, ch_text, ch_id, source = chosen[c]
        rej_clip, cut_r = clip(rej_text, options.max_length)
        ch_clip, cut_c = clip(ch_text, options.max_length)
        out.append({
            "id": stable_id("pair", p.item_id, rej_id or rej_text, ch_id or ch_text),
            **p.meta(), "prompt": p.prompt, "chosen": ch_clip, "rejected": rej_clip,
            "chosen_source": source, "chosen_model": ch_model, "chosen_response_id": ch_id,
            "rejected_model": rej_model, "rejected_response_id": rej_id, "truncated": cut_r or cut_c,
        })
    return out


def _unique(entries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    seen, out = set(), []
    for entry in sorted(entries):
        if entry[1] not in seen:
            seen.add(entry[1])
            out.append(entry)
    return out


def clip(text: str, max_length: int | None) -> tuple[str, bool]:
    """``text`` cut to ``max_length`` characters at the last space before the limit (if any)."""
    if not max_length or len(text) <= max_length:
        return text, False
    head = text[:max_length]
    cut = head.rfind(" ")
    return (head[:cut] if cut > max_length // 2 else head).rstrip(), True


def balance_pairs(pairs: list[dict[str, Any]], key: str, seed: int) -> list[dict[str, Any]]:
    """Keep the same number of pairs for every value of ``key`` (the smallest count), chosen with the seed;
    file order is kept."""
    by: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by[pair[key]].append(index)
    if not by:
        return pairs
    n = min(len(v) for v in by.values())
    keep: set[int] = set()
    for value in sorted(by):
        indices = list(by[value])
        random.Random(f"{seed}:balance:{key}:{value}").shuffle(indices)
        keep.update(indices[:n])
    return [pairs[i] for i in sorted(keep)]


def groups_by_language(pairset_prompts: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Which groups appear in which language: the benign controls mirror them."""
    out: dict[str, set[str]] = defaultdict(set)
    for row in pairset_prompts:
        out[row["language"]].add(row["group"])
    return dict(out)
