"""The one interface every model source implements: chat messages in, text out.

A backend only generates text. It knows no store and no benchmark; the runner (``mijabench.run``) drives it,
retries what it reports as retryable and stores the results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..records import SamplingSettings
from .errorkind import ErrorKind

Messages = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]


def with_system_prompt(messages: Messages, system: str | None) -> Messages:
    """The messages a backend sends: ``system`` (the settings' system prompt) goes first unless the messages
    already open with a system message, which then stands as it is. Every backend follows this one rule, so
    the same request renders the same prompt whatever serves it (the runner already puts a target's system
    prompt into the messages; adding it again would send it twice)."""
    messages = [dict(m) for m in messages]
    if system and not (messages and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system})
    return messages


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One call. ``key`` is the caller's id for it (an item id, a response id) and comes back with the result.
    ``prefix`` pre-fills the assistant turn: the model continues that text (prefix injection) and the
    returned text does not include it."""

    key: str
    messages: Messages
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # "stop", "length", ...
    latency_s: float | None = None


class BackendError(Exception):
    """A failed call. ``retryable`` says whether trying again may help; ``retry_after`` is the server's hint
    in seconds (HTTP Retry-After); ``kind`` is a short machine-readable reason (an ``ErrorKind``)."""

    def __init__(self, message: str, *, retryable: bool, kind: str = ErrorKind.ERROR,
                 retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retryable, self.kind, self.retry_after, self.status = retryable, kind, retry_after, status


class Backend(ABC):
    """Subclasses set ``name`` (the label responses are stored under) and implement ``generate``."""

    name: str = "backend"
    spec: str = ""
    default_concurrency: int = 8
    supports_prefix: bool = True
    # whether the runner should adapt the calls in flight to the server (429s, queueing). A local backend
    # batches what it is given and gains from a full queue, so it is sent its full concurrency instead.
    adaptive_concurrency: bool = True

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> Generation:
        """Answer one request or raise BackendError."""

    async def check(self) -> None:
        """Fail fast, with a MijaError, when the model cannot be reached or does not exist."""

    async def aclose(self) -> None:
        """Release connections, threads, memory."""

    def info(self) -> dict[str, Any]:
        """What the report should know about the model: family, params_b (billions), anything else."""
        return {}
