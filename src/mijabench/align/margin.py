"""Preference margins: how much more a policy prefers the chosen answer over the rejected one than its
reference model does,

    margin = [log p(chosen) - log p(rejected)]_policy - [log p(chosen) - log p(rejected)]_reference,

with log p the summed token log-probabilities of the answer after the chat-templated prompt (the quantity
DPO's loss pushes up, divided by beta). Tokenization follows TRL's DPOTrainer: the prompt rendered with the
generation prompt, the answer as the tokens where prompt and prompt+answer diverge, truncated from the end
at ``max_length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _ids(tokenizer, messages: list[dict[str, str]], **kwargs) -> list[int]:
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    return list(encoded["input_ids"])


def tokenize_pair(tokenizer, prompt: str, answer: str,
                  max_length: int | None = None) -> tuple[list[int], int]:
    """(token ids of prompt + answer, where the answer starts)."""
    user = [{"role": "user", "content": prompt}]
    prompt_ids = _ids(tokenizer, user, add_generation_prompt=True)
    full = _ids(tokenizer, user + [{"role": "assistant", "content": answer}])
    start = 0
    for a, b in zip(prompt_ids, full, strict=False):
        if a != b:
            break
        start += 1
    if max_length:
        full = full[:max_length]
    return full, min(start, len(full))


def answer_logps(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], *,
                 max_length: int | None = None, batch_size: int = 4) -> np.ndarray:
    """Summed log-probability of each answer given its prompt, under ``model`` (no gradients)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = np.zeros(len(prompts), dtype=np.float64)
    encoded = [tokenize_pair(tokenizer, p, a, max_length) for p, a in zip(prompts, answers, strict=True)]
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        answer_mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, (ids, answer_start) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            answer_mask[row, answer_start:len(ids)] = True
        with torch.inference_mode():
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
        logps = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = input_ids[:, 1:].to(device)
        token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = answer_mask[:, 1:].to(device)  # token t is predicted at position t - 1
        out[start:start + len(chunk)] = (token_logps * mask).sum(dim=1).double().cpu().numpy()
    return out


def preference_gaps(model, tokenizer, pairs: Sequence[dict[str, Any]], **kwargs) -> np.ndarray:
    """log p(chosen) - log p(rejected) for each pair under ``model``."""
    prompts = [p["prompt"] for p in pairs]
    chosen = answer_logps(model, tokenizer, prompts, [p["chosen"] for p in pairs], **kwargs)
    rejected = answer_logps(model, tokenizer, prompts, [p["rejected"] for p in pairs], **kwargs)
    return chosen - rejected


def preference_margins(policy, tokenizer, pairs: Sequence[dict[str, Any]], *, reference=None,
                       **kwargs) -> np.ndarray:
    """Policy gap minus reference gap per pair. Without ``reference`` the policy must be a PEFT model; its
    adapter is switched off to score the reference."""
    policy_gap = preference_gaps(policy, tokenizer, pairs, **kwargs)
    if reference is not None:
        return policy_gap - preference_gaps(reference, tokenizer, pairs, **kwargs)
    if not hasattr(policy, "disable_adapter"):
        raise ValueError("preference_margins needs a reference model or a PEFT policy")
    with policy.disable_adapter():
        reference_gap = preference_gaps(policy, tokenizer, pairs, **kwargs)
    return policy_gap - reference_gap


def summarize_margins(margins: np.ndarray) -> dict[str, float | int]:
    if len(margins) == 0:
        return {"pairs": 0, "mean": float("nan"), "median": float("nan"), "share_positive": float("nan")}
    return {"pairs": int(len(margins)), "mean": float(np.mean(margins)), "median": float(np.median(margins)),
            "share_positive": float(np.mean(margins > 0))}
