"""A backend with scripted behaviour, for tests and offline demos of the machinery.

It answers from rules rather than a model: a fixed reply, a refusal when the prompt contains chosen words,
replies looked up by prompt substring, and injected failures (every request failing its first N tries, or a
seeded share of requests failing). Everything is deterministic for a given configuration.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field

from .base import Backend, BackendError, Generation, GenerationRequest
from .errorkind import ErrorKind

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass
class ScriptedBackend(Backend):
    name: str = "scripted"
    reply: str = "Sure. Here is what you asked for."
    refuse_on: tuple[str, ...] = ()
    refusal: str = DEFAULT_REFUSAL
    replies: dict[str, str] = field(default_factory=dict)  # prompt substring -> reply
    fail_first: int = 0  # every request fails this many times before it succeeds
    fail_rate: float = 0.0  # share of requests that fail once (seeded)
    fail_kind: str = ErrorKind.SERVER_ERROR
    retryable: bool = True
    latency_s: float = 0.0
    echo: bool = False  # reply with the last user message (handy for judge and rewriter tests)
    seed: int = 0
    default_concurrency: int = 16

    def __post_init__(self):
        self.spec = f"scripted:{self.name}"
        self.calls = 0
        self._tries: dict[str, int] = defaultdict(int)

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        self._tries[request.key] += 1
        tries = self._tries[request.key]
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        fails_once = self.fail_rate and random.Random(f"{self.seed}:{request.key}").random() < self.fail_rate
        if tries <= self.fail_first or (fails_once and tries == 1):
            raise BackendError(f"injected {self.fail_kind}", retryable=self.retryable, kind=self.fail_kind)
        prompt = "\n".join(m["content"] for m in request.messages if m["role"] == "user")
        text = self._answer(prompt)
        words = len(text.split())
        return Generation(text=text, prompt_tokens=len(prompt.split()), completion_tokens=words,
                          finish_reason="stop", latency_s=self.latency_s)

    @classmethod
    def from_config(cls, config) -> ScriptedBackend:
        """``scripted:NAME``; YAML ``options`` set the other fields (reply, refuse_on, fail_rate, ...)."""
        options = dict(config.options)
        if "refuse_on" in options:
            options["refuse_on"] = tuple(options["refuse_on"])
        unknown = sorted(set(options) - set(cls.__dataclass_fields__) - {"name"})
        if unknown:
            from ..errors import MijaError
            raise MijaError(f"model '{config.name}': unknown option(s) {', '.join(unknown)} for scripted "
                            "models")
        backend = cls(name=config.name, **options)
        backend.spec = config.spec
        return backend

    def _answer(self, prompt: str) -> str:
        lowered = prompt.lower()
        for needle, reply in self.replies.items():
            if needle.lower() in lowered:
                return reply
        if any(word.lower() in lowered for word in self.refuse_on):
            return self.refusal
        if self.echo:
            return prompt
        return self.reply
