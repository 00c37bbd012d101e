"""Chosen answers written by a model: for prompts that no model answered safely, ask a chosen model and keep
its reply only when the rule judge calls it a refusal (and it is not empty). Prompts it fails on fall back to
the template refusals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..backends.base import GenerationRequest
from ..records import SAFE


@dataclass
class ModelRefusals:
    model: str
    answers: dict[str, tuple[str, str]] = field(default_factory=dict)  # item id -> (model, text)
    asked: int = 0
    answered: int = 0
    failed: int = 0

    def summary(self) -> dict[str, int | str]:
        return {"model": self.model, "asked": self.asked, "answered": self.answered, "failed": self.failed,
                "judged_safe_and_used": len(self.answers)}


def model_refusals(prompts: dict[str, str], model: str, *, max_tokens: int = 512) -> ModelRefusals:
    """Ask ``model`` (any model string or YAML file) every prompt in ``prompts`` (item id -> prompt)."""
    from ..backends.registry import create_backend, parse_model
    from ..judge.rules import RefusalRules
    from ..run.engine import execute

    config = parse_model(model, max_tokens=max_tokens)
    result = ModelRefusals(config.name, asked=len(prompts))
    texts: dict[str, str] = {}

    def on_result(outcome) -> None:
        if outcome.generation is not None:
            texts[outcome.request.key] = outcome.generation.text
        else:
            result.failed += 1

    async def run() -> None:
        backend = create_backend(config)
        try:
            await backend.check()
            requests = (GenerationRequest(key=key, messages=[{"role": "user", "content": prompt}],
                                          settings=config.settings) for key, prompt in prompts.items())
            await execute(requests, backend, on_result, concurrency=config.concurrency)
        finally:
            await backend.aclose()

    if prompts:
        asyncio.run(run())
    judge = RefusalRules()
    result.answered = len(texts)
    for key, text in texts.items():
        if text.strip() and judge.judge(text).label == SAFE:
            result.answers[key] = (config.name, text.strip())
    return result
