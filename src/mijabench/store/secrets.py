"""Keep credentials out of everything the store, logs and reports write.

Two defences: configuration keys that name a secret are dropped, and any string that contains the value of a
secret-looking environment variable has that value masked.
"""

from __future__ import annotations

import os
import re
from typing import Any

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization|bearer)", re.I)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)
# Token counts are settings, not credentials: keep max_tokens, prompt_tokens and the like.
_COUNT_KEY = re.compile(r"^(max|min|max_new|prompt|completion|total|num)_tokens$", re.I)
MASK = "***"


def secret_values() -> list[str]:
    """Values of environment variables whose names look like credentials (long enough to be one)."""
    return sorted({v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8},
                  key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    for value in secrets if secrets is not None else secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``obj`` with secret-named keys removed and secret values masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: redact(v, secrets) for k, v in obj.items()
                if not _SECRET_KEY.search(str(k)) or _COUNT_KEY.match(str(k))}
    if isinstance(obj, list | tuple):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    return obj
