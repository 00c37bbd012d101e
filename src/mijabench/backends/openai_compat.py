"""Any OpenAI-compatible HTTP server (vLLM, Ollama, llama.cpp server, TGI, OpenAI itself) as a Backend.

``openai:MODEL@URL[,URL...]`` names a served model and one or more base URLs (replicas of one model; calls go
to the replica with the fewest in flight). ``openai:MODEL`` alone means the default local server
(http://127.0.0.1:8000/v1); whatever follows ``@`` must be http(s) URLs, else the model string is refused.
A URL may carry credentials (``http://USER:PASSWORD@host/v1``, percent-encoded where needed): they are taken
out of the URL, sent to that URL as HTTP basic auth (instead of the API key), and masked in everything
stored or printed. Options (YAML ``options:``):

- ``api_key_env`` (default ``OPENAI_API_KEY``): the environment variable holding the key; no key, no auth
  header. The key is only ever read from the environment and only ever sent in the Authorization header;
  its value is masked in everything stored or printed, whatever the variable is called.
- ``vllm_extras`` (default on): send vLLM's extra fields (``chat_template_kwargs.enable_thinking`` so
  reasoning stays off, ``add_special_tokens: false`` on templated text completions). A server that rejects
  them with any 4xx naming the field (OpenAI's 400, ``transformers serve``'s 422) gets the request again
  without them, and that URL never gets them again.
- ``prefix_mode``: how prefix injection (the assistant turn pre-filled, the model continues it) is sent.
  ``completions`` (default) renders the chat template locally with the tokenizer named by ``tokenizer`` (an
  HF id or folder, or a ``.gguf`` file) and calls ``/completions``; ``chat`` sends the assistant message last
  with vLLM's ``continue_final_message``.
- ``balance``: ``least_in_flight`` (default) or ``round_robin`` across URLs.
- ``check_timeout_s`` (5), ``connect_timeout_s`` (10).

Every failure becomes a BackendError: connection errors and drops, 5xx, 429 (with Retry-After), timeouts,
malformed bodies and empty choices are retryable; 400/401/403/404 are not, and say why.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections import Counter, deque
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from ..errors import MijaError
from ..store.secrets import register_secret_env, scrub_text
from .base import Backend, BackendError, Generation, GenerationRequest, Messages, with_system_prompt
from .errorkind import ErrorKind
from .urls import DEFAULT_URL, check_url, parse_target, split_credentials

__all__ = ["OpenAIBackend", "parse_target", "parse_retry_after", "load_tokenizer"]

DEFAULT_CONCURRENCY = 64
REPLICA_DOWN_S = 5.0  # a replica that refused a connection is skipped this long (while others are up)
OPTIONS = {"api_key_env", "vllm_extras", "prefix_mode", "tokenizer", "balance", "check_timeout_s",
           "connect_timeout_s"}
VLLM_EXTRA_FIELDS = ("chat_template_kwargs", "add_special_tokens")
LATENCIES_KEPT = 10_000  # per replica, for its median latency: the latest answers are what matters


class OpenAIBackend(Backend):
    default_concurrency = DEFAULT_CONCURRENCY

    def __init__(self, model: str, base_urls: list[str] | tuple[str, ...] = (DEFAULT_URL,), *,
                 name: str | None = None, concurrency: int | None = None,
                 api_key_env: str = "OPENAI_API_KEY", vllm_extras: bool = True,
                 prefix_mode: str = "completions", tokenizer: str | None = None,
                 balance: str = "least_in_flight", check_timeout_s: float = 5.0,
                 connect_timeout_s: float = 10.0):
        if prefix_mode not in ("completions", "chat"):
            raise MijaError(f"option prefix_mode must be 'completions' or 'chat', got {prefix_mode!r}")
        if balance not in ("least_in_flight", "round_robin"):
            raise MijaError(f"option balance must be 'least_in_flight' or 'round_robin', got {balance!r}")
        if not base_urls:
            raise MijaError(f"model '{model}': no server URL")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise MijaError(f"model '{model}': option api_key_env must name an environment variable")
        register_secret_env(api_key_env)  # its value is a secret whatever the variable is called
        self.model = model
        self.base_urls = []
        self._basic_auth: dict[str, str] = {}  # URL -> "Basic ..." from credentials written in the URL
        for url in base_urls:
            clean, auth = split_credentials(check_url(url, model))
            self.base_urls.append(clean.rstrip("/"))
            if auth:
                self._basic_auth[clean.rstrip("/")] = auth
        self.name = name or f"openai:{model}"
        self.spec = f"openai:{model}@{','.join(self.base_urls)}"
        self.pool_size = concurrency or DEFAULT_CONCURRENCY
        self.api_key_env = api_key_env
        self.vllm_extras = vllm_extras
        self.prefix_mode = prefix_mode
        self.tokenizer_name = tokenizer
        self.supports_prefix = prefix_mode == "chat" or tokenizer is not None
        self.balance = balance
        self.check_timeout_s = check_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.in_flight: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # requests per replica
        self.failed: Counter[str] = Counter()  # of them: error statuses, dropped connections, given up on
        self.latencies: dict[str, deque[float]] = {u: deque(maxlen=LATENCIES_KEPT) for u in self.base_urls}
        self.strict_urls: set[str] = set()  # replicas that refused vLLM's extra fields: never sent again
        # what the servers say they serve: /models per replica at check time, and the "model" field of
        # answers; recorded with the run so a report can show which weights actually answered
        self.listed_models: dict[str, list[str]] = {}
        self.served_roots: dict[str, str] = {}  # URL -> vLLM's "root" of the model (the weights' path)
        self.answered_by: Counter[str] = Counter()
        self._down_until: dict[str, float] = {}
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer: Any = None
        self._tokenizer_lock: asyncio.Lock | None = None

    @classmethod
    def from_config(cls, config) -> OpenAIBackend:
        model, urls = parse_target(config.target)
        unknown = set(config.options) - OPTIONS
        if unknown:
            raise MijaError(f"model '{config.name}': unknown option(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(OPTIONS))})")
        backend = cls(model, urls, name=config.name, concurrency=config.concurrency, **config.options)
        backend.spec = config.spec
        return backend

    def info(self) -> dict[str, Any]:
        return {"served_model": self.model, "base_urls": list(self.base_urls),
                "listed_models": {base: ids for base, ids in self.listed_models.items()},
                "served_roots": dict(self.served_roots),
                "answered_by": dict(self.answered_by), "replicas": self.replica_stats(),
                "without_extras": sorted(self.strict_urls)}

    def replica_stats(self) -> dict[str, dict[str, Any]]:
        """Per replica: requests sent (retries and re-sends included), how many failed, median latency of
        the answered ones."""
        out = {}
        for base in self.base_urls:
            latencies = self.latencies[base]
            out[base] = {"requests": self.sent[base], "failures": self.failed[base],
                         "median_latency_s": round(statistics.median(latencies), 4) if latencies else None}
        return out

    # -- HTTP session ------------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        """One session per event loop, its connection pool sized to the concurrency."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            headers = {"Content-Type": "application/json"}
            key = os.environ.get(self.api_key_env, "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
            connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=headers, raise_for_status=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s))
            self._session_loop = loop
            self._tokenizer_lock = asyncio.Lock()
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _auth_headers(self, base: str) -> dict[str, str] | None:
        """Credentials written in this URL win over the API key for requests to it."""
        auth = self._basic_auth.get(base)
        return {"Authorization": auth} if auth else None

    def _pick_replica(self) -> str:
        if len(self.base_urls) == 1:
            return self.base_urls[0]
        now = time.monotonic()
        up = [u for u in self.base_urls if self._down_until.get(u, 0.0) <= now] or self.base_urls
        self._turn += 1
        rotated = [up[(self._turn + i) % len(up)] for i in range(len(up))]
        if self.balance == "round_robin":
            return rotated[0]
        return min(rotated, key=lambda u: self.in_flight[u])  # ties go to the next in turn

    # -- generation --------------------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> Generation:
        if request.prefix is not None and self.prefix_mode == "completions":
            path, payload = "/completions", await self._completion_payload(request)
        else:
            path, payload = "/chat/completions", self._chat_payload(request)
        data, latency = await self._post(path, payload)
        reported = data.get("model") if isinstance(data, dict) else None
        if isinstance(reported, str) and reported:
            self.answered_by[reported[:200]] += 1
        return _parse_generation(data, chat=path == "/chat/completions", latency_s=latency)

    def _messages(self, request: GenerationRequest) -> Messages:
        return with_system_prompt(request.messages, request.settings.system_prompt)

    def _sampling(self, request: GenerationRequest) -> dict[str, Any]:
        s = request.settings
        fields: dict[str, Any] = {"model": self.model, "max_tokens": s.max_tokens,
                                  "temperature": s.temperature, "top_p": s.top_p}
        if s.seed is not None:
            fields["seed"] = s.seed
        return fields

    def _chat_payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload = self._sampling(request)
        messages = self._messages(request)
        if request.prefix is not None:
            if self.prefix_mode != "chat":
                raise BackendError("prefix injection needs option prefix_mode: chat or a tokenizer",
                                   retryable=False, kind=ErrorKind.CONFIG)
            messages.append({"role": "assistant", "content": request.prefix})
            payload["continue_final_message"] = True
            payload["add_generation_prompt"] = False
        payload["messages"] = messages
        if self.vllm_extras:
            payload["chat_template_kwargs"] = {"enable_thinking": request.settings.thinking}
        return payload

    async def _completion_payload(self, request: GenerationRequest) -> dict[str, Any]:
        tokenizer = await self._load_tokenizer()
        conversation = self._messages(request) + [{"role": "assistant", "content": request.prefix}]
        try:
            prompt = tokenizer.apply_chat_template(conversation, tokenize=False, continue_final_message=True,
                                                   enable_thinking=request.settings.thinking)
        except Exception as exc:  # jinja errors, templates that reject a role order
            raise BackendError(f"chat template of {self.tokenizer_name} failed: {exc}", retryable=False,
                               kind=ErrorKind.CONFIG) from exc
        payload = self._sampling(request)
        payload["prompt"] = prompt
        if self.vllm_extras:
            payload["add_special_tokens"] = False  # the template already holds BOS and friends
        return payload

    async def _load_tokenizer(self) -> Any:
        if self._tokenizer is not None:
            return self._tokenizer
        if self.tokenizer_name is None:
            raise BackendError("prefix injection over /completions needs option 'tokenizer' (an HF id, "
                               "folder or .gguf file with a chat template), or option prefix_mode: chat",
                               retryable=False, kind=ErrorKind.CONFIG)
        self._http()  # makes the lock for this loop
        async with self._tokenizer_lock:
            if self._tokenizer is None:
                try:
                    self._tokenizer = await asyncio.to_thread(load_tokenizer, self.tokenizer_name)
                except Exception as exc:
                    raise BackendError(f"cannot load tokenizer {self.tokenizer_name}: {exc}",
                                       retryable=False, kind=ErrorKind.CONFIG) from exc
        return self._tokenizer

    async def _post(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """The answer's JSON and its latency: from sending the request that was answered to its answer."""
        base = self._pick_replica()
        if base in self.strict_urls:
            _drop_extras(payload)
        status, body, headers, latency = await self._send(base, path, payload)
        if 400 <= status < 500 and _has_extras(payload) and _rejects_extras(body):
            # this server is strict about unknown fields (FastAPI-based ones answer 422): remember it for
            # this URL and send the request again without them
            self.strict_urls.add(base)
            _drop_extras(payload)
            status, body, headers, latency = await self._send(base, path, payload)
        if status >= 400:
            raise self._status_error(status, body, headers, base + path)
        try:
            data = json.loads(body)
        except ValueError:
            raise BackendError(f"malformed JSON from {base}{path}: {_excerpt(body)}", retryable=True,
                               kind=ErrorKind.MALFORMED) from None
        if not isinstance(data, dict):
            raise BackendError(f"unexpected JSON from {base}{path}: {_excerpt(body)}", retryable=True,
                               kind=ErrorKind.MALFORMED)
        self.latencies[base].append(latency)
        return data, latency

    async def _send(self, base: str, path: str, payload: dict[str, Any]) -> tuple[int, bytes, Any, float]:
        """One HTTP request. Cancelling it (the engine's time-out) leaves the ``async with`` before the body
        is read, and aiohttp then closes the connection instead of pooling it: the server sees the hang-up."""
        session = self._http()
        self.in_flight[base] += 1
        self.sent[base] += 1
        start = time.monotonic()
        ok = False
        try:
            async with session.post(base + path, data=json.dumps(payload).encode("utf-8"),
                                    headers=self._auth_headers(base)) as response:
                body = await response.read()
                ok = response.status < 400
                return response.status, body, response.headers, time.monotonic() - start
        except aiohttp.ClientConnectorError as exc:
            self._down_until[base] = time.monotonic() + REPLICA_DOWN_S
            raise BackendError(f"cannot connect to {base} ({_reason(exc)})", retryable=True,
                               kind=ErrorKind.CONNECTION) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise BackendError(f"connection to {base} dropped ({_reason(exc)})", retryable=True,
                               kind=ErrorKind.CONNECTION) from None
        except TimeoutError:
            raise BackendError(f"{base} timed out", retryable=True, kind=ErrorKind.TIMEOUT) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"HTTP error talking to {base}: {_reason(exc)}", retryable=True,
                               kind=ErrorKind.CONNECTION) from None
        finally:
            self.in_flight[base] -= 1
            if not ok:
                self.failed[base] += 1

    def _status_error(self, status: int, body: bytes, headers: Any, where: str) -> BackendError:
        # a server may echo the credential it got: masked before the message reaches a log or the screen
        message = scrub_text(_error_message(body))
        retry_after = parse_retry_after(headers.get("Retry-After"))
        text = f"HTTP {status} from {where}: {message}"
        if status == 429:
            return BackendError(text, retryable=True, kind=ErrorKind.RATE_LIMITED, retry_after=retry_after,
                                status=status)
        if status >= 500 or status == 408:
            return BackendError(text, retryable=True, kind=ErrorKind.SERVER_ERROR, retry_after=retry_after,
                                status=status)
        if status in (401, 403):
            hint = (f"the key in ${self.api_key_env} was refused" if os.environ.get(self.api_key_env)
                    else f"no API key sent (set ${self.api_key_env})")
            return BackendError(f"{text} ({hint})", retryable=False, kind=ErrorKind.AUTH, status=status)
        lowered = message.lower()
        if "model" in lowered and ("does not exist" in lowered or "not found" in lowered or status == 404):
            return BackendError(f"model '{self.model}' does not exist on the server ({text}); check the name",
                                retryable=False, kind=ErrorKind.MODEL_NOT_FOUND, status=status)
        if status == 404:
            return BackendError(f"{text} (is the base URL right? it usually ends in /v1)", retryable=False,
                                kind=ErrorKind.NOT_FOUND, status=status)
        return BackendError(text, retryable=False, kind=ErrorKind.BAD_REQUEST, status=status)

    # -- fail fast ---------------------------------------------------------------------------------------
    async def check(self) -> None:
        """Every replica answers GET /models within check_timeout_s and lists the model (when it lists
        models at all); the tokenizer for prefix injection loads. Otherwise one MijaError line."""
        await asyncio.gather(*(self._check_replica(base) for base in self.base_urls))
        if self.tokenizer_name is not None and self.prefix_mode == "completions":
            try:
                await self._load_tokenizer()
            except BackendError as exc:
                raise MijaError(f"model '{self.name}': {exc}") from None

    async def _check_replica(self, base: str) -> None:
        session = self._http()
        try:
            async with session.get(base + "/models", headers=self._auth_headers(base),
                                   timeout=aiohttp.ClientTimeout(total=self.check_timeout_s)) as response:
                status, body = response.status, await response.read()
        except TimeoutError:
            raise MijaError(f"no answer from the OpenAI-compatible server at {base} within "
                            f"{self.check_timeout_s:g}s; is it running?") from None
        except aiohttp.ClientError as exc:
            raise MijaError(f"cannot reach the OpenAI-compatible server at {base} ({_reason(exc)}); "
                            "is it running and is the URL right?") from None
        if status in (401, 403):
            hint = (f"the key in ${self.api_key_env} was refused" if os.environ.get(self.api_key_env)
                    else f"set the API key in ${self.api_key_env}")
            raise MijaError(f"{base} refused the request (HTTP {status}): {hint}")
        if status >= 400:
            return  # some servers have no /models; the first generation will tell
        try:
            entries = [m for m in json.loads(body).get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError, TypeError):
            return
        served = [m.get("id") for m in entries]
        self.listed_models[base] = [str(m)[:200] for m in served[:20]]
        root = next((m.get("root") for m in entries if m.get("id") == self.model), None)
        if isinstance(root, str) and root:
            self.served_roots[base] = root[:300]
        if served and self.model not in served:
            shown = ", ".join(str(m) for m in served[:10]) + (" ..." if len(served) > 10 else "")
            raise MijaError(f"model '{self.model}' is not served at {base} (it serves: {shown}); "
                            "check the name in --model")


def load_tokenizer(name: str) -> Any:
    """A transformers tokenizer (for its chat template) from an HF id, a folder or a .gguf file."""
    from transformers import AutoTokenizer  # heavy: imported only for prefix injection over /completions

    if name.endswith(".gguf"):
        folder, _, file = name.rpartition("/")
        return AutoTokenizer.from_pretrained(folder or ".", gguf_file=file)
    return AutoTokenizer.from_pretrained(name)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from an HTTP Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse_generation(data: dict[str, Any], *, chat: bool, latency_s: float) -> Generation:
    choices = data.get("choices")
    if not choices:
        raise BackendError("the server answered with no choices", retryable=True, kind=ErrorKind.EMPTY)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise BackendError(f"unexpected choice in answer: {choice!r:.200}", retryable=True,
                           kind=ErrorKind.MALFORMED)
    if chat:
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    if text is None and chat and isinstance(choice.get("message"), dict):
        text = ""  # content null: the model said nothing (e.g. stopped at max_tokens while reasoning)
    if not isinstance(text, str):
        raise BackendError(f"answer without text: {json.dumps(choice)[:200]}", retryable=True,
                           kind=ErrorKind.MALFORMED)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Generation(text=text, prompt_tokens=_int(usage.get("prompt_tokens")),
                      completion_tokens=_int(usage.get("completion_tokens")),
                      finish_reason=choice.get("finish_reason"), latency_s=latency_s)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _error_message(body: bytes) -> str:
    """The message of an OpenAI-style ({"error": {"message"}}) or vLLM-style ({"message"}) error body."""
    try:
        data = json.loads(body)
    except ValueError:
        return _excerpt(body)
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
        if data.get("message"):
            return str(data["message"])[:300]
        detail = data.get("detail")  # FastAPI: a string, or a list of {loc, msg} validation errors
        if isinstance(detail, str):
            return detail[:300]
        if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
            return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg', '')}"
                             for d in detail)[:300]
    return _excerpt(body)


def _has_extras(payload: dict[str, Any]) -> bool:
    return any(field in payload for field in VLLM_EXTRA_FIELDS)


def _drop_extras(payload: dict[str, Any]) -> None:
    for field in VLLM_EXTRA_FIELDS:
        payload.pop(field, None)


def _rejects_extras(body: bytes) -> bool:
    """The error names one of the extra fields: in its message, or anywhere in the body (FastAPI lists the
    offending field under ``detail[].loc``)."""
    text = body.decode("utf-8", errors="replace").lower()
    return any(field in text for field in VLLM_EXTRA_FIELDS)


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = scrub_text(body.decode("utf-8", errors="replace")).strip().replace("\n", " ")
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is not None and getattr(os_error, "strerror", None):
        return os_error.strerror
    return str(exc) or type(exc).__name__
