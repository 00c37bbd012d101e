"""The engine that drives backends (concurrency, retries, progress) and the generation runner built on it
(every item to every model, stored as it arrives, resumable)."""

from ..backends.errorkind import FATAL_KINDS
from .engine import Outcome, RetryPolicy, RunStats, call_with_retries, execute
from .generate import arun_items, run_items
from .limiter import AdaptiveLimiter

__all__ = ["FATAL_KINDS", "AdaptiveLimiter", "Outcome", "RetryPolicy", "RunStats", "arun_items",
           "call_with_retries", "execute", "run_items"]
