"""Why a model call failed: the ``kind`` of a ``BackendError``, one name per reason.

The values are stored: a failed response's or verdict's error text starts with its kind, and run summaries
and rewriter events count failures by kind. So a value never changes; a new reason gets a new member. A
``StrEnum`` member equals, hashes and serializes as its plain string, so a store written before this enum
existed reads back the same, and a plugin backend that passes a plain string still works.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    # the connection or the server
    CONNECTION = "connection"  # refused, reset, DNS: nothing came back
    TIMEOUT = "timeout"  # no answer within the time-out of one attempt
    RATE_LIMITED = "rate_limited"  # HTTP 429
    SERVER_ERROR = "server_error"  # HTTP 5xx
    MALFORMED = "malformed"  # an answer that is not the expected JSON
    EMPTY = "empty"  # an answer with no choices
    # the request or the set-up: retrying the same call cannot help
    AUTH = "auth"  # HTTP 401/403: a missing or bad key
    MODEL_NOT_FOUND = "model_not_found"  # the server does not serve the model
    NOT_FOUND = "not_found"  # HTTP 404 on the endpoint itself
    BAD_REQUEST = "bad_request"  # another HTTP 4xx
    CONFIG = "config"  # the model's options cannot make this request (prefix injection without a tokenizer)
    PREFIX_UNSUPPORTED = "prefix_unsupported"  # the chat template cannot carry an assistant prefix
    TEMPLATE_ERROR = "template_error"  # the chat template failed on these messages
    # an in-process model
    LOAD_ERROR = "load_error"  # the weights could not be loaded
    OOM = "oom"  # out of accelerator memory (retryable: a smaller batch may pass)
    LOCAL_ERROR = "local_error"  # generation itself raised
    CLOSED = "closed"  # the backend was closed while the request waited
    INFERENCE_ERROR = "inference_error"  # a Ray Data vLLM stage failed on the row
    # the runner
    INTERNAL = "internal"  # a backend raised something other than BackendError (a bug, recorded)
    ERROR = "error"  # no reason given (BackendError's default)


# Kinds that fail every call alike (a bad key, a missing model, an impossible option): a run stops sending
# on the first one and keeps what is stored, instead of failing each remaining item the same way.
FATAL_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.MODEL_NOT_FOUND, ErrorKind.NOT_FOUND, ErrorKind.CONFIG})
