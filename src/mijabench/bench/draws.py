"""Seeded draws for the rewriter: which strategy and scenario category each seed gets, and, per attempt,
which scenario, few-shot examples and prefix.

Strategies and categories are dealt out as quotas inside each (language, group) stratum rather than drawn
independently, so every group gets the same strategy mix and the same spread of scenario categories (to
within one item), and the remainders rotate between strata so the language as a whole stays balanced too.
Every draw is a function of (RNG seed, seed id, attempt) alone: results do not depend on concurrency, on the
order outcomes arrive in, or on whether the build was interrupted and resumed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MijaError
from ..records import Seed, stable_id
from ..taxonomy import load_taxonomy


def parse_strategy_mix(spec: str | dict[str, float] | None) -> dict[str, float]:
    """Weights per strategy id, in taxonomy order. ``None``/"uniform": all equal; "a,b": a and b equally;
    "a=2,b=1": a twice as often as b. Weights are normalised to sum to 1."""
    tax = load_taxonomy()
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "uniform", "all")):
        weights = {s: 1.0 for s in tax.strategies}
    elif isinstance(spec, dict):
        weights = {tax.check_strategy(k, field="strategies"): float(v) for k, v in spec.items()}
    else:
        weights = {}
        for part in spec.split(","):
            name, _, value = part.partition("=")
            if not name.strip():
                continue
            sid = tax.check_strategy(name, field="strategies")
            try:
                weights[sid] = float(value) if value.strip() else 1.0
            except ValueError as exc:
                raise MijaError(f"--strategies: weight of '{name.strip()}' is not a number: {value!r}") \
                    from exc
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise MijaError("--strategies: weights must be non-negative and not all zero")
    total = sum(weights.values())
    return {s: weights[s] / total for s in tax.strategies if weights.get(s, 0) > 0}


def deal(n: int, weights: dict[str, float], totals: Counter, dealt_before: int,
         rng: random.Random) -> list[str]:
    """``n`` labels in proportion to ``weights``: each gets floor(n * weight), and the remainder goes to the
    labels furthest below their share of everything dealt so far (``totals``, over ``dealt_before`` items;
    ties broken by ``rng``). Within one call counts differ from the exact share by less than one, and
    across calls the running totals stay within one of theirs. Updates ``totals``."""
    counts = {k: int(n * w) for k, w in weights.items()}
    after = dealt_before + n
    keys = list(weights)
    rng.shuffle(keys)
    keys.sort(key=lambda k: -round(after * weights[k] - totals[k] - counts[k], 9))  # stable: ties stay random
    for k in keys[: n - sum(counts.values())]:
        counts[k] += 1
    totals.update(counts)
    return [k for k in weights for _ in range(counts[k])]


@dataclass(frozen=True)
class Slot:
    """A seed's place in the build: the strategy and scenario category it was dealt."""

    seed: Seed
    strategy: str
    category: str
    index: int  # position of the seed in the input: results are processed in this order


def assign_slots(seeds: Sequence[Seed], mix: dict[str, float], categories: dict[str, list[str]],
                 rng_seed: int) -> list[Slot]:
    """Deal strategies (by ``mix``) and scenario categories (evenly over ``categories[language]``) to the
    seeds of each (language, group) stratum; return the slots in input order."""
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, seed in enumerate(seeds):
        strata[(seed.language, seed.group)].append(i)
    dealt: dict[int, tuple[str, str]] = {}
    totals: dict[str, tuple[Counter, Counter, list[int]]] = {}
    for (language, group), members in sorted(strata.items()):
        cats = sorted(categories.get(language) or ())
        if not cats:
            raise MijaError(f"no scenarios in language '{language}' for its seeds "
                            "(run `mijabench scenarios build` or use --scenarios builtin)")
        strategy_totals, category_totals, count = totals.setdefault(language, (Counter(), Counter(), [0]))
        rng = random.Random(stable_id("deal", rng_seed, language, group))
        members = sorted(members, key=lambda i: seeds[i].id)
        rng.shuffle(members)
        strategies = deal(len(members), mix, strategy_totals, count[0], rng)
        dealt_cats = deal(len(members), {c: 1 / len(cats) for c in cats}, category_totals, count[0], rng)
        rng.shuffle(strategies)
        rng.shuffle(dealt_cats)
        count[0] += len(members)
        for n, i in enumerate(members):
            dealt[i] = (strategies[n], dealt_cats[n])
    return [Slot(seed, *dealt[i], index=i) for i, seed in enumerate(seeds)]


def attempt_rng(rng_seed: int, seed_id: str, attempt: int) -> random.Random:
    """The generator for one attempt at one seed: retries draw again, differently, and reproducibly."""
    return random.Random(stable_id("attempt", rng_seed, seed_id, attempt))
