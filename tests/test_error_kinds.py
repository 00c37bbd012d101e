"""Error kinds are stored (in failed responses, run summaries and events), so their values never change: a
store written before the enum existed must read back, and be counted, the same."""

from __future__ import annotations

import json

from mijabench.backends.errorkind import FATAL_KINDS, ErrorKind
from mijabench.backends.registry import ModelConfig
from mijabench.backends.scripted import ScriptedBackend
from mijabench.records import BenchmarkItem
from mijabench.run.engine import RetryPolicy
from mijabench.run.generate import run_items

# the stored spellings, as stores written so far hold them
STORED = {
    "CONNECTION": "connection", "TIMEOUT": "timeout", "RATE_LIMITED": "rate_limited",
    "SERVER_ERROR": "server_error", "MALFORMED": "malformed", "EMPTY": "empty", "AUTH": "auth",
    "MODEL_NOT_FOUND": "model_not_found", "NOT_FOUND": "not_found", "BAD_REQUEST": "bad_request",
    "CONFIG": "config", "PREFIX_UNSUPPORTED": "prefix_unsupported", "TEMPLATE_ERROR": "template_error",
    "LOAD_ERROR": "load_error", "OOM": "oom", "LOCAL_ERROR": "local_error", "CLOSED": "closed",
    "INFERENCE_ERROR": "inference_error", "INTERNAL": "internal", "ERROR": "error",
}


def test_every_kind_keeps_its_stored_spelling():
    assert {k.name: k.value for k in ErrorKind} == STORED
    assert FATAL_KINDS == {"auth", "model_not_found", "not_found", "config"}


def test_a_fatal_kind_is_stored_and_counted_as_its_plain_string(store):
    items = [BenchmarkItem(language="en", group="women", seed_text="s", scenario_category="history",
                           scenario_text="a market", strategy="persona_assignment", prompt=f"p {i}")
             for i in range(3)]
    backend = ScriptedBackend(name="a", fail_first=99, retryable=False, fail_kind=ErrorKind.AUTH)
    stats = run_items(store, items, [ModelConfig(spec="scripted:a", name="a")], progress=False,
                      policy=RetryPolicy(max_attempts=2, backoff_base_s=0.0), backends={"a": backend})
    assert stats["a"].aborted  # a bad key fails every call alike: the model stops after the first
    errors = [e for (e,) in store.query("SELECT error FROM responses")]
    assert errors and all(type(e) is str and e.startswith("auth: ") for e in errors)
    (detail,) = [e["detail"] for e in store.events(stage="generate") if e["kind"] == "summary"]
    assert detail["errors"] == {"auth": len(errors)}
    raw = store.query("SELECT detail FROM events WHERE kind = 'summary'")[0][0]
    assert json.loads(raw)["errors"] == {"auth": len(errors)} and '"auth"' in raw
