"""Continuous batching for the local transformers backend: one decode loop that keeps a batch of rows full.

Decoding a small model on a CPU is bound by the cost of each forward step, not by arithmetic, so the speed is
in running many rows per step and in never letting a finished row sit idle. ``model.generate`` runs a fixed
batch until its longest row ends, and its cache grows by concatenation: on the embedded 135M model, copying
the cache was over half of every decode step. Here instead:

* one key/value buffer per layer, ``[rows, kv_heads, capacity, head_dim]``, allocated once and written in
  place (``_RowCache``); each row has its own write column and position, so rows at different points of
  their replies share a step;
* a finished row is refilled at once: the new prompts are prefilled together in a separate forward pass
  (left-padded, with a 4D mask) and their keys and values copied into the free rows;
* a per-row mask (``valid``) says which columns each row attends to; padding and a row's previous occupant
  are masked out, so a row sees exactly its own tokens, at its own positions;
* an opening shared by several prompts (a system prompt) is prefilled once, and on CPU its keys and values
  stay outside the buffer: the row holds only what follows it, and decode steps attend to both parts
  through ``row_attention`` (more rows in the same memory).

Greedy replies are the replies of one-at-a-time ``model.generate`` (up to float rounding on near ties);
seeded sampling uses the same per-row generators as the ``generate`` path (``_SeededRowSampler``).

Transformers' own continuous batching (``generate_batch``, ``transformers serve --continuous-batching``)
uses paged attention and measured slower than plain ``generate`` on this CPU, so it is not used.

Only plain decoder models with full attention in every layer take this path (``supports``); others (sliding
windows, hybrid caches) keep ``model.generate``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from ..records import SamplingSettings
from . import row_attention
from .heap import release_freed_memory

# Architectures known to build their attention from a standard (batch, heads, length, dim) cache and to
# take a prepared 4D mask and explicit position ids as they are.
FULL_ATTENTION_TYPES = {"llama", "mistral", "qwen2", "qwen3", "granite", "olmo", "olmo2", "phi3", "smollm3",
                        "gemma"}
PREFILL_TOKENS = 1024  # padded prompt tokens run per prefill pass: bounds its activations
# cache columns a prefill pass holds, its rows' shared opening included (each row gets its own copy until
# they are moved into the buffer): bounds the pass's cache, the largest short-lived allocation of a refill
PREFILL_CACHE_TOKENS = 1536
MIN_SHARED_PREFIX = 16  # shorter common openings are not worth a forward pass of their own
# the buffer's width grows in steps of this many columns: every row pays for the widest one, so a coarse step
# costs rows (the demo's longest prompt, 269 tokens + 64 new, takes 352 columns, not 384)
CAPACITY_STEP = 32
RESIZE_TRIM_BYTES = 64 * 2**20  # a rebuild of the buffer hands back the old layers this much at a time
PREFIX_CACHE_BYTES = 64 * 2**20  # keys and values of recent shared prefixes kept for the next refills


def supports(model) -> bool:
    """Whether ``model`` can run in the continuous decode loop."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in FULL_ATTENTION_TYPES:
        return False
    if getattr(config, "_attn_implementation", "sdpa") not in {"sdpa", "eager"}:
        return False
    if getattr(config, "is_encoder_decoder", False):
        return False
    import inspect

    if "cache" not in inspect.signature(model.forward).parameters:  # the cache argument's name before 5.x
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    # a sliding window that is switched on (Mistral, Qwen with use_sliding_window) needs its own masks
    window = getattr(config, "sliding_window", None)
    return window is None or getattr(config, "use_sliding_window", None) is False


def kv_bytes_per_token(model) -> int:
    """Bytes of keys and values one token takes in the cache, over all layers."""
    config = model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = next(model.parameters()).element_size()
    return 2 * config.num_hidden_layers * heads * head_dim * element


@dataclass
class RowRequest:
    """What the loop needs of one request: its prompt tokens, limits and sampling. ``owner`` is the
    caller's handle (a queued job), returned with the result."""

    owner: Any
    prompt_ids: list[int]
    settings: SamplingSettings


@dataclass
class RowResult:
    owner: Any
    tokens: list[int]  # the reply, without the end token
    prompt_tokens: int
    completion_tokens: int  # with the end token, when there was one
    finish_reason: str  # "stop" or "length"
    latency_s: float


@dataclass
class _Row:
    request: RowRequest
    position: int  # the position id of the next token to feed
    column: int  # the cache column that token is written to
    next_token: int
    started: float
    tokens: list[int] = field(default_factory=list)
    generator: Any = None
    opening: _Prefix | None = None  # a shared opening kept outside the buffer (row_attention)


class DecodeLoop:
    """Rows of one model decoding together. ``admit`` prefills new rows into free slots; ``step`` feeds
    every active row its next token and returns the rows that finished. Not thread-safe: one worker runs it.

    ``rows`` is how many rows run together; ``set_rows`` changes it (the buffer is rebuilt, active rows
    kept). Memory: ``rows * capacity * kv_bytes_per_token`` for the buffer, plus the model; ``rows_for``
    (capacity -> most rows whose buffer fits the memory budget) is checked when prompts arrive, as only
    then is the capacity known."""

    def __init__(self, model, eos_ids: list[int], pad_id: int, rows: int,
                 rows_for: Callable[[int], int] | None = None):
        import torch

        self.torch, self.model = torch, model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.eos_ids, self.pad_id = set(eos_ids), int(pad_id)
        self.rows = max(1, int(rows))
        self.rows_for = rows_for or (lambda capacity: self.rows)
        self.slots: list[_Row | None] = []
        self.cache: _RowCache | None = None
        self.valid: Any = None  # [slots, capacity] bool: the columns each row attends to
        self.capacity = 0
        self.steps = self.prefills = 0
        self.prefixes = PrefixStates(model, self.device)
        # rows keep a shared opening's keys and values outside the buffer, read once a step for all of them
        self.shares_openings = row_attention.install(model)

    # ---- public ---------------------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return sum(row is not None for row in self.slots)

    @property
    def free(self) -> int:
        return max(0, self.rows - self.active)

    def owners(self) -> list[Any]:
        return [row.request.owner for row in self.slots if row is not None]

    def drop(self, owner: Any) -> None:
        """Forget a row (its caller gave up waiting)."""
        for i, row in enumerate(self.slots):
            if row is not None and row.request.owner is owner:
                self._free_slot(i)

    def clear(self) -> list[Any]:
        """Drop every row and the buffer (after an out-of-memory error); returns the owners dropped."""
        owners = self.owners()
        self.slots, self.cache, self.valid, self.capacity = [], None, None, 0
        self.prefixes.clear()
        return owners

    def set_rows(self, rows: int) -> None:
        self.rows = max(1, int(rows))

    def admit(self, requests: list[RowRequest]) -> tuple[list[RowResult], list[RowRequest]]:
        """Prefill the first of ``requests`` that fit into free slots: at most ``free`` of them, and no more
        than the memory budget allows once their prompt lengths widen the buffer. Returns the rows that
        ended on their first token (an end token, or max_tokens 1), and the requests left out, in order.
        Requests that begin with the same tokens (a system prompt, a template's opening) are prefilled
        together, and that shared opening only once."""
        room, width = self._room(requests)
        plan = (width, self.active + room)  # the buffer these requests and the active rows need together
        requests, left = requests[:room], requests[room:]
        done: list[RowResult] = []
        for shared, group in self._with_kept_openings(shared_prefix_groups(requests)):
            prefix = self.prefixes.states(group[0].prompt_ids[:shared]) if shared else None
            ordered = sorted(group, key=lambda r: len(r.prompt_ids))  # similar lengths: less padding
            chunk: list[RowRequest] = []
            for request in ordered:
                width = max(len(request.prompt_ids), *(len(r.prompt_ids) for r in chunk)) - shared if chunk \
                    else len(request.prompt_ids) - shared
                if chunk and (width * (len(chunk) + 1) > PREFILL_TOKENS
                              or (shared + width) * (len(chunk) + 1) > PREFILL_CACHE_TOKENS):
                    done += self._prefill(chunk, prefix, plan)
                    chunk = []
                chunk.append(request)
            if chunk:
                done += self._prefill(chunk, prefix, plan)
        if requests:
            release_freed_memory()
        return done, left

    def _room(self, requests: list[RowRequest]) -> tuple[int, int]:
        """How many of ``requests``, taken in order, fit beside the active rows, and the buffer width they
        and the active rows need (``needed_capacity``): each one taken may widen the buffer, and a wider
        buffer holds fewer rows in the same memory. The width counts what the rows need, not what the
        buffer has: once its long rows are done, a buffer too wide for the budget to hold more rows is
        narrowed (``_prefill``). At least one when none is active (a single row over budget still runs)."""
        longest = most_tokens = 0
        room, plan = 0, 0
        floor = self.needed_capacity()
        for taken, request in enumerate(requests[:self.free], start=1):
            longest = max(longest, len(request.prompt_ids) - self._kept_opening(request.prompt_ids))
            most_tokens = max(most_tokens, request.settings.max_tokens)
            capacity = max(floor, _round_up(longest + most_tokens, CAPACITY_STEP))
            if self.active + taken > min(self.rows, self.rows_for(capacity)):
                break
            room, plan = taken, capacity
        if not room and not self.active and requests:
            return 1, max(floor, _round_up(len(requests[0].prompt_ids) + requests[0].settings.max_tokens,
                                           CAPACITY_STEP))
        return room, plan

    def _kept_opening(self, ids: list[int]) -> int:
        """Columns of ``ids`` an opening already kept would hold outside the buffer (an estimate: the opening
        ``admit`` shares may differ; the buffer is sized again from the real one after the prefill)."""
        if not self.shares_openings:
            return 0
        found = self.prefixes.longest_kept(ids)
        return 0 if found is None else found.length

    def _with_kept_openings(self, groups: list[tuple[int, list[RowRequest]]]
                            ) -> list[tuple[int, list[RowRequest]]]:
        """``groups`` with each request that shares no opening within this refill given the longest opening
        kept from earlier refills that it begins with (a refill of one row of a system prompt's requests
        would otherwise run that prompt again, and keep its columns in the row)."""
        out: list[tuple[int, list[RowRequest]]] = []
        for shared, members in groups:
            if shared:
                out.append((shared, members))
                continue
            by_opening: dict[tuple[int, ...], list[RowRequest]] = {}
            rest = []
            for request in members:
                found = self.prefixes.longest_kept(request.prompt_ids)
                if found is None or found.length < MIN_SHARED_PREFIX:
                    rest.append(request)
                else:
                    by_opening.setdefault(found.ids, []).append(request)
            out += [(len(ids), members) for ids, members in by_opening.items()]
            if rest:
                out.append((0, rest))
        return out

    def needed_capacity(self) -> int:
        """The buffer width the active rows need to the end of their replies (0 with none active)."""
        need = max((row.column + row.request.settings.max_tokens - len(row.tokens)
                    for row in self.slots if row is not None), default=0)
        return _round_up(need, CAPACITY_STEP) if need else 0

    def step(self) -> list[RowResult]:
        """One token for every active row."""
        torch = self.torch
        live = [i for i, row in enumerate(self.slots) if row is not None]
        if not live:
            return []
        n = live[-1] + 1  # run the slots up to the last live one; empty ones in between idle harmlessly
        tokens, positions, columns = [], [], []
        for i in range(n):
            row = self.slots[i]
            if row is None:
                tokens.append(self.pad_id)
                positions.append(0)
                columns.append(0)
            else:
                tokens.append(row.next_token)
                positions.append(row.position)
                columns.append(row.column)
        cols = torch.tensor(columns, device=self.device)
        index = torch.arange(n, device=self.device)
        self.valid[index, cols] = True
        span = max(columns) + 1
        self.cache.prepare(index, cols, n, span)
        mask = self.valid[:n, None, None, :span]
        openings = self._shared_openings(n, mask)
        with torch.inference_mode(), (row_attention.attending(openings) if openings else nullcontext()):
            out = self.model(input_ids=torch.tensor(tokens, device=self.device)[:, None],
                             position_ids=torch.tensor(positions, device=self.device)[:, None],
                             attention_mask=mask, cache=self.cache, use_cache=True)
        logits = out.logits[:, -1, :].float()
        self.steps += 1
        finished: list[RowResult] = []
        picks = self._pick(logits, [self.slots[i] for i in range(n)])
        for i in live:
            row = self.slots[i]
            row.position += 1
            row.column += 1
            result = self._advance(row, picks[i])
            if result is not None:
                finished.append(result)
                self._free_slot(i)
        return finished

    def _shared_openings(self, n: int, mask) -> row_attention.SharedOpenings | None:
        """The step's rows by the opening they keep outside the buffer; None when no row keeps one."""
        torch = self.torch
        groups: dict[int, tuple[_Prefix, list[int]]] = {}
        for i in range(n):
            row = self.slots[i]
            if row is not None and row.opening is not None:
                groups.setdefault(id(row.opening), (row.opening, []))[1].append(i)
        if not groups:
            return None
        bias = torch.zeros(mask.shape, dtype=self.dtype, device=self.device)
        bias.masked_fill_(~mask, float("-inf"))
        return row_attention.SharedOpenings(
            [(opening.layers, None if len(members) == n else torch.tensor(members, device=self.device))
             for opening, members in groups.values()], bias)

    # ---- prefill ---------------------------------------------------------------------------------------

    def _prefill(self, requests: list[RowRequest], prefix: _Prefix | None, plan: tuple[int, int]
                 ) -> list[RowResult]:
        """One forward pass over ``requests``' prompts, left-padded to a common width. With ``prefix``,
        only the tokens after it are run: its keys and values (computed once) start every row's cache, at
        columns ``[0, p)``, and the padded rest follows at ``[p, p + width)``."""
        torch = self.torch
        from transformers import DynamicCache

        p = 0 if prefix is None else prefix.length
        k = len(requests)
        width = max(len(r.prompt_ids) for r in requests) - p
        ids = torch.full((k, width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((k, width), dtype=torch.long)
        keep = torch.zeros((k, p + width), dtype=torch.bool)  # real (not padding) columns
        keep[:, :p] = True
        for j, request in enumerate(requests):
            own = len(request.prompt_ids) - p
            ids[j, width - own:] = torch.tensor(request.prompt_ids[p:])
            positions[j, width - own:] = torch.arange(p, p + own)
            keep[j, p + width - own:] = True
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        # A padding query attends to itself only, so no row of the mask is empty (an empty one gives NaN).
        mask = (causal[None] & keep[:, None, p:]) | torch.eye(width, dtype=torch.bool)[None]
        if p:
            mask = torch.cat([torch.ones((k, width, p), dtype=torch.bool), mask], dim=2)
            cache = DynamicCache(ddp_cache_data=[(keys.expand(k, -1, -1, -1), values.expand(k, -1, -1, -1))
                                                 for keys, values in prefix.layers])
        else:
            cache = DynamicCache()
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), position_ids=positions.to(self.device),
                             attention_mask=mask[:, None].to(self.device), cache=cache, use_cache=True,
                             logits_to_keep=1)
        self.prefills += 1
        logits = out.logits[:, -1, :].float()
        del out
        release_freed_memory()  # the pass's activations, before the buffer may grow and the rows move in
        now = time.monotonic()
        kept = p if self.shares_openings else 0  # prompt columns kept outside the buffer, with the opening
        rows = [_Row(r, position=len(r.prompt_ids), column=p + width - kept, next_token=-1, started=now,
                     opening=prefix if kept else None) for r in requests]
        picks = self._pick(logits, rows)
        finished: list[RowResult] = []
        going: list[tuple[_Row, int]] = []  # rows that go on decoding, with their row in the prefill batch
        for j, row in enumerate(rows):
            result = self._advance(row, picks[j])
            if result is None:
                going.append((row, j))
            else:
                finished.append(result)
        if going:
            need = p + width - kept + max(row.request.settings.max_tokens for row, _ in going)
            wanted = self.active + len(going)
            planned = max(wanted, plan[1])  # the rows of this whole admission, when it has more passes
            # the width admit planned for the active rows and all it takes (it checked the budget there)
            target = max(plan[0], _round_up(need, CAPACITY_STEP))
            if target < self.capacity and planned > self.rows_for(self.capacity):
                capacity = target  # the long rows that widened the buffer are done: narrow it, more rows fit
            else:
                capacity = max(self.capacity, _round_up(need, CAPACITY_STEP))
            if capacity != self.capacity or wanted > self._allocated_rows():
                # rows grow by doubling up to the batch size: a few long rows (a rewriter's 3 prompts of
                # 1,000 tokens) must not get a buffer sized for a full batch of them
                rows = max(wanted, min(self.rows, self.rows_for(capacity), 1 << (planned - 1).bit_length()))
                self._resize(rows, capacity)
            placed = [(self._take_slot(row), j) for row, j in going]
            self._copy_in(cache, keep, placed, kept, p + width)
        return finished

    def _take_slot(self, row: _Row) -> int:
        for i, existing in enumerate(self.slots):
            if existing is None:
                self.slots[i] = row
                return i
        self.slots.append(row)
        return len(self.slots) - 1

    def _copy_in(self, prefill_cache, keep, placed: list[tuple[int, int]], start: int, stop: int) -> None:
        """The prefill's columns ``[start, stop)`` of the placed rows into their slots' first columns."""
        torch = self.torch
        slots = torch.tensor([s for s, _ in placed], device=self.device)
        rows = torch.tensor([j for _, j in placed], device=self.device)
        width = stop - start
        for layer, (keys, values) in enumerate(_layer_tensors(prefill_cache)):
            self.cache.keys[layer][slots, :, :width] = keys[rows, :, start:stop]
            self.cache.values[layer][slots, :, :width] = values[rows, :, start:stop]
        self.valid[slots] = False
        self.valid[slots, :width] = keep[rows.cpu(), start:stop].to(self.device)

    # ---- buffer ----------------------------------------------------------------------------------------

    def _allocated_rows(self) -> int:
        return 0 if self.cache is None else self.cache.keys[0].shape[0]

    def _resize(self, rows: int, capacity: int) -> None:
        """A new buffer of ``rows`` x ``capacity``; the active rows move to its first slots. Layer by
        layer, so at the peak only one layer exists twice."""
        torch = self.torch
        config = self.model.config
        layers = config.num_hidden_layers
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        live = [i for i, row in enumerate(self.slots) if row is not None]
        rows = max(rows, len(live))
        shape = (rows, heads, capacity, head_dim)
        old = self.cache
        keys = old.keys if old is not None else [None] * layers
        values = old.values if old is not None else [None] * layers
        used = min(self.capacity, capacity)
        freed = 0
        for layer in range(layers):
            for buffers in (keys, values):
                fresh = torch.zeros(shape, dtype=self.dtype, device=self.device)
                if live:
                    fresh[:len(live), :, :used] = buffers[layer][live, :, :used]
                if buffers[layer] is not None:
                    freed += buffers[layer].nbytes
                buffers[layer] = fresh  # the old layer goes as soon as it is replaced
                if freed >= RESIZE_TRIM_BYTES and self.device.type == "cpu":
                    # the old layers were served from the heap (heap.py): freed there, they stay
                    # resident, and by the last layer the old buffer would exist beside the new one
                    release_freed_memory()
                    freed = 0
        valid = torch.zeros((rows, capacity), dtype=torch.bool, device=self.device)
        valid[:, 0] = True  # an idle slot attends to one column, never to none
        if live:
            valid[:len(live), :used] = self.valid[live, :used]
        self.slots = [self.slots[i] for i in live]
        self.cache, self.valid, self.capacity = _RowCache(keys, values), valid, capacity

    def _free_slot(self, i: int) -> None:
        self.slots[i] = None
        while self.slots and self.slots[-1] is None:
            self.slots.pop()

    # ---- tokens ----------------------------------------------------------------------------------------

    def _pick(self, logits, rows: list[_Row | None]) -> list[int]:
        """The next token of each row: argmax for greedy rows, a draw from the row's own seeded generator
        for sampled ones (as ``_SeededRowSampler`` does on the generate path)."""
        torch = self.torch
        picks = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            if row is None or row.request.settings.temperature <= 0:
                continue
            s = row.request.settings
            if row.generator is None:
                row.generator = torch.Generator(device=logits.device).manual_seed(int(s.seed))
            picks[i] = sample_token(logits[i], s, row.generator)
        return picks

    def _advance(self, row: _Row, token: int) -> RowResult | None:
        """Take ``token`` as the row's next one; a RowResult when the row is finished."""
        limit = row.request.settings.max_tokens
        if token in self.eos_ids:
            return self._result(row, len(row.tokens) + 1, "stop")
        row.tokens.append(token)
        row.next_token = token
        if len(row.tokens) >= limit:
            return self._result(row, len(row.tokens), "length")
        return None

    def _result(self, row: _Row, completion: int, reason: str) -> RowResult:
        return RowResult(row.request.owner, row.tokens, len(row.request.prompt_ids), completion, reason,
                         time.monotonic() - row.started)


def nearest_prompts(prompts: list[list[int]], count: int) -> list[int]:
    """Indices of ``count`` of ``prompts`` to prefill in one refill, in their order: the first (the oldest
    waiting), then those nearest it in length, first among the prompts with its opening (its first
    ``MIN_SHARED_PREFIX`` tokens; another opening is prefilled in a pass of its own anyway). Prompts of
    about one length pad little when they share a pass."""
    if count >= len(prompts):
        return list(range(len(prompts)))
    if count <= 0:
        return []
    head = prompts[0]
    opening, length = head[:MIN_SHARED_PREFIX], len(head)
    rest = sorted(range(1, len(prompts)),
                  key=lambda i: (prompts[i][:MIN_SHARED_PREFIX] != opening, abs(len(prompts[i]) - length), i))
    return sorted([0, *rest[:count - 1]])


def shared_prefix_groups(requests: list[RowRequest]) -> list[tuple[int, list[RowRequest]]]:
    """``requests`` split into groups that share an opening, each with the length of the opening its rows
    all share (0: prefill them as they are). In token order, neighbours share the longest openings; a
    request joins the group before it when the tokens saved (members x shared length) do not fall. Every row
    keeps at least its last prompt token to itself: the prefill needs its logits."""
    groups: list[tuple[int, list[RowRequest]]] = []
    for request in sorted(requests, key=lambda r: r.prompt_ids):
        if groups:
            shared, members = groups[-1]
            last = members[-1].prompt_ids
            common = min(_common_length(last, request.prompt_ids), len(last) - 1, len(request.prompt_ids) - 1)
            joined = common if len(members) == 1 else min(shared, common)
            if joined >= MIN_SHARED_PREFIX and len(members) * joined >= (len(members) - 1) * shared:
                groups[-1] = (joined, [*members, request])
                continue
        groups.append((len(request.prompt_ids), [request]))
    alone = [members[0] for _, members in groups if len(members) == 1]  # prefilled together, as they are
    shared_groups = [(shared, members) for shared, members in groups if len(members) > 1]
    return shared_groups + ([(0, alone)] if alone else [])


def _common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Prefix:
    """Keys and values of a shared opening: a ``(keys, values)`` pair per layer, ``[1, heads, p, dim]``."""

    ids: tuple[int, ...]
    layers: list[tuple[Any, Any]]

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.layers)


class PrefixStates:
    """Shared openings computed once and kept for later refills (least recently used first out, within
    ``PREFIX_CACHE_BYTES``). An opening that extends a kept one runs only its new tokens."""

    def __init__(self, model, device):
        self.model, self.device = model, device
        self.kept: dict[tuple[int, ...], _Prefix] = {}  # insertion order is recency
        self.computed_tokens = 0  # prompt tokens run for openings (the benchmark prints it)

    def clear(self) -> None:
        self.kept.clear()

    def longest_kept(self, ids: list[int] | tuple[int, ...]) -> _Prefix | None:
        """The longest kept opening that ``ids`` begin with and go beyond (None if there is none)."""
        key = tuple(ids)
        return max((p for p in self.kept.values() if p.length < len(key) and key[:p.length] == p.ids),
                   key=lambda p: p.length, default=None)

    def states(self, ids: list[int]) -> _Prefix:
        key = tuple(ids)
        found = self.kept.pop(key, None)
        if found is None:
            found = self._extend(self.longest_kept(ids), key)
        self.kept[key] = found
        while len(self.kept) > 1 and sum(p.nbytes for p in self.kept.values()) > PREFIX_CACHE_BYTES:
            del self.kept[next(iter(self.kept))]
        return found

    def _extend(self, base: _Prefix | None, ids: tuple[int, ...]) -> _Prefix:
        import torch
        from transformers import DynamicCache

        start = 0 if base is None else base.length
        cache = DynamicCache(ddp_cache_data=base.layers) if base is not None else DynamicCache()
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([ids[start:]], device=self.device),
                       position_ids=torch.arange(start, len(ids), device=self.device)[None],
                       cache=cache, use_cache=True, logits_to_keep=1)
        self.computed_tokens += len(ids) - start
        return _Prefix(ids, _layer_tensors(cache))


class _RowCache:
    """Placeholder replaced at import time by a transformers ``Cache`` subclass (see ``_make_row_cache``),
    so importing this module does not import transformers."""

    def __new__(cls, keys, values):
        return _make_row_cache()(keys, values)


_ROW_CACHE_CLASS: Any = None


def _make_row_cache():
    """A transformers Cache over preallocated buffers: each layer writes the step's one new key and value
    per row at that row's column, and returns the first ``span`` columns of the live rows."""
    global _ROW_CACHE_CLASS
    if _ROW_CACHE_CLASS is not None:
        return _ROW_CACHE_CLASS
    from transformers.cache_utils import Cache, CacheLayerMixin

    class RowLayer(CacheLayerMixin):
        is_sliding = False

        def __init__(self, owner, index: int):
            super().__init__()
            # weakly: a cycle (cache -> layer -> cache) kept the whole buffer until Python's next full
            # collection, which a backend's close then had to force (half a second with torch loaded)
            self._owner, self.index = weakref.ref(owner), index
            self.is_initialized = True

        @property
        def owner(self):
            return self._owner()

        def lazy_initialization(self, key_states, value_states) -> None:
            pass

        def update(self, key_states, value_states, *args, **kwargs):
            o = self.owner
            keys, values = o.keys[self.index], o.values[self.index]
            keys[o.rows, :, o.cols] = key_states[:, :, 0]
            values[o.rows, :, o.cols] = value_states[:, :, 0]
            return keys[:o.n, :, :o.span], values[:o.n, :, :o.span]

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.owner.span, 0

        def get_seq_length(self) -> int:
            return self.owner.span

        def get_max_length(self) -> int:
            return self.owner.keys[self.index].shape[2]

    class RowCache(Cache):
        def __init__(self, keys, values):
            self.keys, self.values = keys, values
            self.rows = self.cols = None
            self.n = self.span = 0
            super().__init__(layers=[RowLayer(self, i) for i in range(len(keys))])

        def prepare(self, rows, cols, n: int, span: int) -> None:
            self.rows, self.cols, self.n, self.span = rows, cols, n, span

    _ROW_CACHE_CLASS = RowCache
    return RowCache


def _layer_tensors(cache) -> list[tuple[Any, Any]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def sample_token(logits, settings, generator) -> int:
    """One draw from a row's logits at its temperature and top-p, with the row's own seeded generator; the
    decode loop and the generate path's ``_SeededRowSampler`` both draw with it, so their samples agree."""
    import torch

    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs >= settings.top_p  # never drops the top token
        probs = probs.scatter(0, order[outside], 0.0)
    return int(torch.multinomial(probs, 1, generator=generator))
