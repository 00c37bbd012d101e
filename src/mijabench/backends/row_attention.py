"""Decode-step attention for rows that begin with a shared opening, whose keys and values are kept once.

Prompts that open alike (a system prompt, a template's first lines) have that opening prefilled once
(``continuous.PrefixStates``). Copied into every row of the key/value buffer, it took a quarter of the
demo's buffer (the safety prompt: about 80 of 320 columns a row) and as much of what each decode step
reads. Here a row's buffer holds only its own tokens; a step attends to them with the flash kernel, as
before, and to the row's opening in one more call per opening (the rows that share it folded into the
query length, so the opening is read once for all of them). The two partial results are merged by their
log-sum-exp, which gives the softmax over both parts (up to float rounding).

The model's attention is routed here by registering this function with transformers and naming it in the
model's config (``install``). The decode loop names the step's openings around its forward call
(``attending``), on its own thread: not as a keyword argument, which each architecture would have to pass
down to its attention (one that did not would silently attend without the openings). Calls outside a step
with openings (prefill passes, ``model.generate``, steps where no row has one) go to sdpa, the attention the
model had before (``install`` reroutes no other), unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

NAME = "mijabench_rows"
_registered = False
_step = threading.local()  # the openings of the decode step running on this thread, if any


@dataclass
class SharedOpenings:
    """What one decode step needs to attend to shared openings: ``groups`` pairs an opening's keys and
    values (per layer, ``[1, kv_heads, length, dim]``) with the indices of the step's rows that begin with
    it (None: all of them); ``bias`` is the additive mask of every row's own columns, ``[rows, 1, 1,
    span]`` (0 or -inf: the flash kernel takes no boolean mask)."""

    groups: list[tuple[list[tuple[Any, Any]], Any]]
    bias: Any


def install(model) -> bool:
    """Route ``model``'s attention through ``shared_attention``; False (nothing changed) for a model off the
    CPU (the merge uses the CPU flash kernel) or with another attention than sdpa: the decode loop then
    copies openings into every row. (With eager attention, decode steps through the flash kernel gave
    other replies than eager ``model.generate`` on near ties.)"""
    global _registered
    if next(model.parameters()).device.type != "cpu":
        return False
    config = model.config
    current = getattr(config, "_attn_implementation", None)
    if current == NAME:
        return True
    if current != "sdpa":
        return False
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, shared_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks of prefill passes, as for sdpa
        _registered = True
    config._attn_implementation = NAME
    return True


@contextmanager
def attending(openings: SharedOpenings) -> Iterator[None]:
    """Decode steps run inside this attend to ``openings`` (on this thread)."""
    _step.openings = openings
    try:
        yield
    finally:
        _step.openings = None


def shared_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of one decode token per row over its shared opening and its own columns (see the module
    docstring); any other call goes to the model's own attention."""
    shared = getattr(_step, "openings", None)
    if shared is None or query.shape[2] != 1 or query.shape[0] != shared.bias.shape[0]:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, scaling=scaling,
                                              dropout=dropout, **kwargs)
    import torch

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # one query token: the query heads that share a key/value head become its query length
    q = query.reshape(rows, kv_heads, group, dim)
    out, lse = flash(q, key, value, 0.0, False, attn_mask=shared.bias, scale=scaling)
    for layers, members in shared.groups:
        keys, values = layers[module.layer_idx]
        every = members is None  # all the step's rows share this opening: no gather, no scatter
        count = rows if every else members.shape[0]
        mine = q if every else q[members]
        folded = mine.transpose(0, 1).reshape(1, kv_heads, count * group, dim)
        opening_out, opening_lse = flash(folded, keys, values, 0.0, False, scale=scaling)
        opening_out = opening_out.reshape(kv_heads, count, group, dim).transpose(0, 1)
        opening_lse = opening_lse.reshape(kv_heads, count, group).transpose(0, 1)
        own_out, own_lse = (out, lse) if every else (out[members], lse[members])
        # softmax over both parts: each part's output weighted by its share of the total exp-sum,
        # sigmoid(own_lse - opening_lse) for the row's own columns
        share = torch.sigmoid(own_lse - opening_lse).unsqueeze(-1).to(own_out.dtype)  # lse is float32
        merged = torch.lerp(opening_out, own_out, share)
        if every:
            out = merged
        else:
            out[members] = merged
    return out.reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None

