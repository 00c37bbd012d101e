"""Building the benchmark: scenarios, the adversarial rewriter (a model, or the offline rewriter),
counterfactual twins, and the balance report.

    report = build_benchmark(store, demo_seeds(), builtin_scenarios(), OFFLINE_REWRITER, bench="demo")
"""

from .balance import BalanceReport, balance_report
from .counterfactual import SwapResult, counterfactual_groups, find_mentions, swap_group
from .datafiles import builtin_scenarios, example_scenarios, group_terms
from .draws import assign_slots, parse_strategy_mix
from .parsing import ParsedList, parse_text_list
from .postprocess import clean_rewrite, is_refusal, strip_prefix
from .rewriter import OFFLINE_REWRITER, BuildReport, abuild_benchmark, build_benchmark
from .scenarios import ScenarioBuildReport, abuild_scenarios, build_scenarios
from .textsim import NearDuplicateIndex

__all__ = [
    "OFFLINE_REWRITER", "BalanceReport", "BuildReport", "NearDuplicateIndex", "ParsedList",
    "ScenarioBuildReport", "SwapResult", "abuild_benchmark", "abuild_scenarios", "assign_slots",
    "balance_report", "build_benchmark", "build_scenarios", "builtin_scenarios", "clean_rewrite",
    "counterfactual_groups", "example_scenarios", "find_mentions", "group_terms", "is_refusal",
    "parse_strategy_mix", "parse_text_list", "strip_prefix", "swap_group",
]
