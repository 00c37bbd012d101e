"""Which column of a judged corpus holds what: the published MiJaBench-Align layouts and a generic long table.

Two shapes are recognised from the column names alone:

- wide (the published corpus): one row per prompt, a response column per model (``jb_response_<model>``) and
  a judge column per judge and model (``jb_cls_<judge>_<model>``, the judge's raw JSON or a plain label);
- long (one row per prompt and model, as ``align export`` writes it, or any generic table): ``model`` and
  ``jb_response`` (or ``response``) columns, judges in ``jb_cls_<judge>`` / ``judge_<judge>`` columns, or a
  ``votes`` list of ``{judge, label}``, or a single ``label`` column.

``--columns ROLE=COLUMN`` overrides or completes the guess; roles are the item fields below, ``model``,
``response``, ``judge:NAME`` (long), ``response:MODEL`` and ``judge:NAME:MODEL`` (wide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

# role -> the column names the published data and our own exports use for it, in order of preference
ITEM_ROLES: dict[str, tuple[str, ...]] = {
    "prompt": ("jb_prompt", "prompt"),
    "group": ("group", "group_id"),
    "language": ("language",),
    "strategy": ("jb_strategy", "strategy"),
    "seed_text": ("text", "seed_text"),
    "scenario_category": ("scenario_category",),
    "scenario_text": ("scenario", "scenario_text"),
    "pair_id": ("pair_id",),  # counterfactual twins keep their link through an export and back
    "seed_id": ("seed_id",),
}
LONG_ROLES: dict[str, tuple[str, ...]] = {"model": ("model",), "response": ("jb_response", "response")}
REQUIRED_ROLES = ("prompt", "group", "strategy")
RESPONSE_PREFIX = "jb_response_"
WIDE_JUDGE_PREFIX = "jb_cls_"
LONG_JUDGE_PREFIXES = ("jb_cls_", "judge_")
VOTES_COLUMN = "votes"
LABEL_COLUMN = "label"
# columns of a long row that describe the response, not the prompt: kept out of the item's provenance
PER_RESPONSE = frozenset({"label", "response_id", "votes", "model", "item_id"})
COLUMNS_HINT = ("name them with --columns ROLE=COLUMN (roles: prompt, group, language, strategy, seed_text, "
                "scenario_category, scenario_text, model, response, judge:NAME; wide tables: response:MODEL, "
                "judge:NAME:MODEL)")


@dataclass
class CorpusColumns:
    layout: str  # "wide" | "long"
    roles: dict[str, str]  # item role (and, long, model/response) -> column
    judges: dict[str, str] = field(default_factory=dict)  # long: judge -> column
    votes: str | None = None  # long: a list-of-votes column
    responses: dict[str, str] = field(default_factory=dict)  # wide: model -> column
    wide_judges: dict[tuple[str, str], str] = field(default_factory=dict)  # wide: (judge, model) -> column

    @property
    def used(self) -> set[str]:
        return {*self.roles.values(), *self.judges.values(), *self.responses.values(),
                *self.wide_judges.values(), *([self.votes] if self.votes else [])}


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``['prompt=question', 'judge:gpt=verdict_gpt']`` -> {role: column}; a malformed pair is an error."""
    out = {}
    for pair in pairs or []:
        role, sep, column = pair.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise InputError(f"expected ROLE=COLUMN, got '{pair}'", field="--columns")
        role = role.strip()
        known = role in ITEM_ROLES or role in LONG_ROLES or role.startswith(("judge:", "response:"))
        if not known:
            raise InputError(f"unknown role '{role}'; {COLUMNS_HINT}", field="--columns")
        out[role] = column.strip()
    return out


def resolve_columns(columns: list[str], origin: str, overrides: dict[str, str] | None = None, *,
                    default_judge: str = "imported", fixed_language: bool = False) -> CorpusColumns:
    """The mapping for a table with ``columns``; raises one InputError listing the columns found when a
    required role has no column or a judge column cannot be tied to a model."""
    overrides = dict(overrides or {})
    present = set(columns)
    for role, column in overrides.items():
        if column not in present:
            raise _unmappable(columns, origin, f"--columns {role}={column}: no such column")
    roles = {r: overrides.get(r) or next((c for c in names if c in present), None)
             for r, names in ITEM_ROLES.items()}
    needed = [*REQUIRED_ROLES, *([] if fixed_language else ["language"])]
    missing = [r for r in needed if not roles[r]]
    if missing:
        raise _unmappable(columns, origin, f"no column for the {', '.join(missing)}")
    roles = {r: c for r, c in roles.items() if c}
    wide_responses = {c[len(RESPONSE_PREFIX):]: c for c in columns if c.startswith(RESPONSE_PREFIX)}
    wide_responses.update({r.split(":", 1)[1]: c for r, c in overrides.items() if r.startswith("response:")})
    if wide_responses:
        return _wide(columns, origin, roles, wide_responses, overrides, default_judge)
    for role, names in LONG_ROLES.items():
        column = overrides.get(role) or next((c for c in names if c in present), None)
        if not column:
            raise _unmappable(columns, origin, f"no column for the {role} (nor any {RESPONSE_PREFIX}<model>)")
        roles[role] = column
    return _long(columns, roles, overrides, default_judge)


def _long(columns: list[str], roles: dict[str, str], overrides: dict[str, str],
          default_judge: str) -> CorpusColumns:
    judges = {r.split(":", 1)[1]: c for r, c in overrides.items() if r.startswith("judge:")}
    taken = set(roles.values()) | set(judges.values())
    for column in columns:
        prefix = next((p for p in LONG_JUDGE_PREFIXES if column.startswith(p)), None)
        if prefix and column not in taken and column[len(prefix):]:
            judges.setdefault(column[len(prefix):], column)
    votes = VOTES_COLUMN if VOTES_COLUMN in columns and not judges else None
    # a lone final label is a judge of its own; beside a votes list it is only their majority, so skipped
    if not judges and not votes and LABEL_COLUMN in columns and LABEL_COLUMN not in roles.values():
        judges[default_judge] = LABEL_COLUMN
    return CorpusColumns("long", roles, judges=judges, votes=votes)


def _wide(columns: list[str], origin: str, roles: dict[str, str], responses: dict[str, str],
          overrides: dict[str, str], default_judge: str) -> CorpusColumns:
    judges: dict[tuple[str, str], str] = {}
    for role, column in overrides.items():
        parts = role.split(":")
        if parts[0] == "judge":
            if len(parts) != 3 or parts[2] not in responses:
                raise _unmappable(columns, origin, f"--columns {role}: a wide table needs judge:NAME:MODEL "
                                                   f"with a model of {', '.join(sorted(responses))}")
            judges[(parts[1], parts[2])] = column
    taken = set(judges.values())
    # longest model name first, so jb_cls_judge_model_v2 is not read as judge 'judge_model' of model 'v2'
    by_length = sorted(responses, key=len, reverse=True)
    for column in columns:
        if not column.startswith(WIDE_JUDGE_PREFIX) or column in taken:
            continue
        rest = column[len(WIDE_JUDGE_PREFIX):]
        model = next((m for m in by_length if rest == m or rest.endswith("_" + m)), None)
        if model is None:
            raise _unmappable(columns, origin, f"judge column '{column}' names no model with a "
                                               f"{RESPONSE_PREFIX}<model> column")
        judge = rest[:-len(model) - 1] if rest != model else default_judge
        judges[(judge or default_judge, model)] = column
    return CorpusColumns("wide", roles, responses=responses, wide_judges=judges)


def _unmappable(columns: list[str], origin: str, why: str) -> InputError:
    return InputError(f"cannot map the columns ({why}); columns found: {', '.join(columns) or 'none'}; "
                      f"{COLUMNS_HINT}", file=origin)
