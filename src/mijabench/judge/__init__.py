"""Judging stored responses: LLM judges and their prompts, the rule-based refusal judge, the vote,
agreement between judges, and validation against human labels.

Main entry points: ``judge_responses`` (runner), ``parse_verdict`` (parse), ``RefusalRules`` (rules),
``final_label``/``vote_table`` (vote), ``cohen_kappa``/``krippendorff_alpha``/``judge_agreement``
(agreement), ``validate_judges`` (validate).

The names are imported on first use: the analysis needs only the vote (``judge.vote``), not the runner and
its HTTP stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agreement import agreement_report, cohen_kappa, judge_agreement, krippendorff_alpha
    from .parse import ParsedVerdict, parse_verdict
    from .rules import RULES_JUDGE, RULES_VERSION, RefusalRules
    from .runner import JudgeRun, JudgeStats, judge_responses, judge_settings
    from .validate import HumanLabels, load_human_labels, validate_judges
    from .vote import TIE_RULE, final_label, vote_table, votes_by_response

_MODULES = {
    "agreement": ("agreement_report", "cohen_kappa", "judge_agreement", "krippendorff_alpha"),
    "parse": ("ParsedVerdict", "parse_verdict"),
    "rules": ("RULES_JUDGE", "RULES_VERSION", "RefusalRules"),
    "runner": ("JudgeRun", "JudgeStats", "judge_responses", "judge_settings"),
    "validate": ("HumanLabels", "load_human_labels", "validate_judges"),
    "vote": ("TIE_RULE", "final_label", "vote_table", "votes_by_response"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}
__all__ = [
    "RULES_JUDGE", "RULES_VERSION", "TIE_RULE",
    "HumanLabels", "JudgeRun", "JudgeStats", "ParsedVerdict", "RefusalRules",
    "agreement_report", "cohen_kappa", "final_label", "judge_agreement", "judge_responses", "judge_settings",
    "krippendorff_alpha", "load_human_labels", "parse_verdict", "validate_judges", "vote_table",
    "votes_by_response",
]


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
