"""Judging stored responses: LLM judges and their prompts, the rule-based refusal judge, the vote,
agreement between judges, and validation against human labels.

Main entry points: ``judge_responses`` (runner), ``parse_verdict`` (parse), ``RefusalRules`` (rules),
``final_label``/``vote_table`` (vote), ``cohen_kappa``/``krippendorff_alpha``/``judge_agreement``
(agreement), ``validate_judges`` (validate).
"""

from .agreement import agreement_report, cohen_kappa, judge_agreement, krippendorff_alpha
from .parse import ParsedVerdict, parse_verdict
from .rules import RULES_JUDGE, RULES_VERSION, RefusalRules
from .runner import JudgeRun, JudgeStats, judge_responses, judge_settings
from .validate import HumanLabels, load_human_labels, validate_judges
from .vote import TIE_RULE, final_label, vote_table, votes_by_response

__all__ = [
    "RULES_JUDGE", "RULES_VERSION", "TIE_RULE",
    "HumanLabels", "JudgeRun", "JudgeStats", "ParsedVerdict", "RefusalRules",
    "agreement_report", "cohen_kappa", "final_label", "judge_agreement", "judge_responses", "judge_settings",
    "krippendorff_alpha", "load_human_labels", "parse_verdict", "validate_judges", "vote_table",
    "votes_by_response",
]
