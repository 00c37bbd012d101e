"""The audit's configuration: one dataclass, filled from a preset, a YAML file and command-line flags.

Precedence: flags over the YAML file over the preset. Presets are data files beside this module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..backends.registry import ModelConfig, model_from_dict
from ..errors import MijaError

PRESETS = ("demo", "quick", "paper", "budget")
# Old field names still read, with a warning: ``bench`` is a benchmark's name in the store (as in every
# command's --bench); where its prompts are loaded from was also called ``benchmark``, too close to it.
RENAMED_FIELDS = {"benchmark": "prompts_from"}
# the fields a budgeted audit may also spread its calls over, within each (model, language, group) cell;
# here, not in ``budgeted``, so checking a configuration does not import the budget's statistics (scipy)
FINER = ("strategy", "scenario_category")


@dataclass(frozen=True)
class AuditConfig:
    bench: str = "demo"  # benchmark name in the store
    demo: bool = False  # the report says this is a demo of the machinery
    seeds: dict[str, Any] = field(default_factory=lambda: {"source": "demo"})
    prompts_from: str | None = None  # load the prompts (file or hub repo) instead of building them from seeds
    rewriter: str = "template"  # "template" (the offline rewriter, bench.OFFLINE_REWRITER) or a model string
    scenarios: str = "builtin"  # "builtin" or "store"
    strategies: str | None = None  # a mix such as "persona_assignment=2,chain_of_thought=1"; uniform if None
    counterfactual: bool = False
    rng_seed: int = 0
    sample_per_cell: int | None = None  # keep N items per group x strategy x language
    models: list[Any] = field(default_factory=list)  # model strings or model-file mappings
    settings: dict[str, Any] = field(default_factory=dict)  # sampling settings applied to every model
    judges: list[Any] = field(default_factory=lambda: ["rules:refusal-v1"])
    # judges whose votes count (names); default: the LLM judges, or the rule judge when it is the only one
    voters: list[str] | None = None
    concurrency: int | None = None
    # out, resamples, examples_per_cell, seed, average, empty_as, allow_even_vote
    report: dict[str, Any] = field(default_factory=dict)
    # a budgeted audit (audit.budgeted): stop each cell at this full width of its 95% interval, in points,
    # and/or after this many target-model calls in all; the seed fixes the order prompts are drawn in
    target_ci: float | None = None
    budget: int | None = None
    budget_seed: int = 0
    budget_by: list[str] = field(default_factory=list)  # finer cells: strategy, scenario_category
    # generate on Ray (run.ray_mode): {address, workers, engine, gpus}; None: in this process
    ray: dict[str, Any] | None = None

    @property
    def budgeted(self) -> bool:
        return self.target_ci is not None or self.budget is not None

    def check_budget(self) -> None:
        """The checks that need no benchmark: a target above 0, a budget of at least one call, known
        finer fields. (A budget under one call per cell is refused once the cells are known.)"""
        from ..errors import InputError
        if self.target_ci is not None and not self.target_ci > 0:
            raise InputError(f"target_ci must be above 0 points, got {self.target_ci:g}")
        if self.budget is not None and self.budget < 1:
            raise InputError(f"budget must be at least one call per cell, got {self.budget}")
        unknown = [f for f in self.budget_by if f not in FINER]
        if unknown:
            raise InputError(f"budget_by: unknown field '{unknown[0]}' (known: {', '.join(FINER)})")

    def voter_names(self) -> list[str]:
        """The voting judges' names, checked against the judges before any work: a named voter must be one
        of the judges, and an even number of voters needs ``report: {allow_even_vote: true}``."""
        from ..analysis.voters import check_vote_size
        names = [judge_name(j) for j in self.judges]
        if self.voters:
            unknown = [v for v in self.voters if v not in names]
            if unknown:
                raise MijaError(f"audit config: voter '{unknown[0]}' is not one of the judges "
                                f"({', '.join(names) or 'none'})")
            chosen = list(dict.fromkeys(self.voters))
        else:
            chosen = [n for n in names if not n.startswith("rules:")] or names
        check_vote_size(chosen, bool(self.report.get("allow_even_vote")), option="voters")
        return chosen

    def model_configs(self) -> list[ModelConfig]:
        if not self.models:
            raise MijaError("no target model: pass --model (e.g. --model openai:NAME@URL) or a config with "
                            "'models:'")
        configs = [model_from_dict(m, source="audit config") for m in self.models]
        if self.settings:
            unknown = set(self.settings) - set(configs[0].settings.to_dict())
            if unknown:
                raise MijaError(f"audit config: unknown setting(s) {', '.join(sorted(unknown))}")
            configs = [replace(c, settings=replace(c.settings, **self.settings)) for c in configs]
        return configs


def judge_name(judge: Any) -> str:
    """The name a judge's verdicts are stored under, without building its backend."""
    from ..judge.plugins import is_plugin_judge
    if isinstance(judge, str) and (judge.startswith("rules:") or is_plugin_judge(judge)):
        return judge  # a judge without a model: its string is its name
    if isinstance(judge, ModelConfig):
        return judge.name
    if isinstance(judge, str):
        from ..backends.registry import parse_model
        return parse_model(judge).name
    return model_from_dict(judge, source="audit config judges").name


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise MijaError(f"unknown preset '{name}' (presets: {', '.join(PRESETS)})")
    text = resources.files(__package__).joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MijaError(f"{path}: audit config not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MijaError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise MijaError(f"{path}: an audit config is a mapping of fields (bench, models, judges, ...)")
    return data


def make_config(*layers: dict[str, Any], source: str = "audit config") -> AuditConfig:
    """Merge layers (later wins; ``None`` values are ignored) into an AuditConfig, refusing unknown fields."""
    known = {f.name for f in fields(AuditConfig)}
    merged: dict[str, Any] = {}
    for layer in layers:
        layer = _renamed(layer, source)
        unknown = set(layer) - known
        if unknown:
            raise MijaError(f"{source}: unknown field(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(known))})")
        for key, value in layer.items():
            if value is None:
                continue
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    _check_types(merged, source)
    return AuditConfig(**merged)


def _renamed(layer: dict[str, Any], source: str) -> dict[str, Any]:
    """The layer with old field names replaced by the new ones, warning at each use."""
    old = [name for name in RENAMED_FIELDS if name in layer]
    if not old:
        return layer
    layer = dict(layer)
    for name in old:
        new = RENAMED_FIELDS[name]
        value = layer.pop(name)
        if value is None:  # a flag not given
            continue
        if layer.get(new) is not None:
            raise MijaError(f"{source}: give '{new}' only ('{name}' is its old name)")
        warnings.warn(f"{source}: field '{name}' is now '{new}'; the old name will stop working in a later "
                      "release", FutureWarning, stacklevel=3)
        layer[new] = value
    return layer


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# field -> (test, what it must be): checked before any work, so a typo never runs or writes a run
_FIELD_RULES: dict[str, tuple[Any, str]] = {
    "bench": (lambda v: isinstance(v, str) and v.strip() != "", "a benchmark name"),
    "demo": (lambda v: isinstance(v, bool), "true or false"),
    "seeds": (lambda v: isinstance(v, dict), "a mapping such as {source: demo}"),
    "prompts_from": (lambda v: isinstance(v, str), "a file or hub repo"),
    "rewriter": (lambda v: isinstance(v, str), "'template' or a model string"),
    "scenarios": (lambda v: v in ("builtin", "store"), "builtin or store"),
    "strategies": (lambda v: isinstance(v, str | dict), "a strategy mix such as persona_assignment=2"),
    "counterfactual": (lambda v: isinstance(v, bool), "true or false"),
    "rng_seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "sample_per_cell": (_positive_int, "a whole number of at least 1"),
    "models": (lambda v: isinstance(v, list), "a list of models"),
    "settings": (lambda v: isinstance(v, dict), "a mapping of sampling settings"),
    "judges": (lambda v: isinstance(v, list), "a list of judges"),
    "voters": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of judge names"),
    "concurrency": (_positive_int, "a whole number of at least 1"),
    "report": (lambda v: isinstance(v, dict), "a mapping of report options"),
}


def _check_types(merged: dict[str, Any], source: str) -> None:
    for key, value in merged.items():
        ok, wanted = _FIELD_RULES.get(key, (lambda v: True, ""))
        if not ok(value):
            raise MijaError(f"{source}: {key} must be {wanted}, got {value!r}")
    if merged.get("ray") is not None:
        if not isinstance(merged["ray"], dict):
            raise MijaError(f"{source}: ray must be a mapping (address, workers, engine, gpus), "
                            f"got {merged['ray']!r}")
        from ..run.ray_mode import check_ray_options
        check_ray_options(merged["ray"])
    if isinstance(merged.get("settings"), dict):
        from ..backends.registry import check_settings
        check_settings(merged["settings"], f"{source}: settings")
