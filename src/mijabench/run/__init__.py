"""The engine that drives backends: concurrency, retries, resume, progress."""

from .engine import Outcome, RetryPolicy, RunStats, call_with_retries, execute

__all__ = ["Outcome", "RetryPolicy", "RunStats", "call_with_retries", "execute"]
