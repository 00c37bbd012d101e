"""Statistics on judged responses: defense rates for any cut, deviations from each model's mean, bootstrap
CIs, disparity figures and tests, paired (counterfactual) analysis, cross-language and scaling tables.

Analysis reads tables and never calls a model. Start with ``load_judged(store)`` and ``analyze(table)``.
"""

from .correction import Correction, corrected_rates
from .frame import Frame
from .rates import DEFAULT_RESAMPLES, deviations, rates
from .results import RATE_CUTS, Analysis, analyze
from .table import Categorical, JudgedTable, load_judged

__all__ = ["RATE_CUTS", "Analysis", "Categorical", "Correction", "DEFAULT_RESAMPLES", "Frame", "JudgedTable",
           "analyze", "corrected_rates", "deviations", "load_judged", "rates"]
