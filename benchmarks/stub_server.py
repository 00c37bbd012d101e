"""A stub OpenAI-compatible server (aiohttp.web) for the runner's fault tests and speed benchmarks.

It serves ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a fixed latency
and answers that are a pure function of the prompt, so a test can check every stored response against its
item. Faults are injected per prompt: attempt k of a prompt fails when a seeded draw for (prompt, k) falls in
a fault's share, and a prompt fails at most ``max_failures`` times, so a patient client always gets through.

In a test::

    with StubServer(models=["m"], faults=Faults(server_error=0.1)) as stub:
        ...  # talk to stub.url ("http://127.0.0.1:PORT/v1")

As a process (the speed benchmark runs it apart from the client, so they do not share one core)::

    python benchmarks/stub_server.py --latency 0.05 --model m    # prints the base URL, then serves
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

FAULT_KINDS = ("server_error", "rate_limit", "hang", "malformed", "drop", "empty")


@dataclass
class Faults:
    """Share of attempts failing with each fault (attempts 1..max_failures of a prompt; later ones succeed).
    ``always`` forces one behaviour on every request: a fault kind, or ``status:CODE`` for an error status."""

    server_error: float = 0.0  # HTTP 500
    rate_limit: float = 0.0  # HTTP 429 with Retry-After
    hang: float = 0.0  # never answers (the client must time out)
    malformed: float = 0.0  # 200 with a body that is not JSON
    drop: float = 0.0  # connection closed without a response
    empty: float = 0.0  # 200 with an empty choices list
    max_failures: int = 2
    seed: int = 0
    retry_after: str = "0.05"  # header value sent with 429
    always: str | None = None
    error_body: str = ""  # extra text in error bodies (to check the client never stores secrets it sees)

    def pick(self, prompt: str, attempt: int) -> str | None:
        if self.always:
            return self.always
        if attempt > self.max_failures:
            return None
        draw = random.Random(f"{self.seed}:{attempt}:{prompt}").random()
        for kind in FAULT_KINDS:
            share = getattr(self, kind)
            if draw < share:
                return kind
            draw -= share
        return None


def reply_for(prompt: str) -> str:
    """The stub's answer to a prompt: tests recompute it to check a stored response belongs to its item."""
    return "stub reply " + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12]


@dataclass
class StubServer:
    models: list[str] = field(default_factory=lambda: ["stub-model"])
    latency_s: float = 0.0
    faults: Faults = field(default_factory=Faults)
    api_key: str | None = None  # when set, requests without "Bearer <key>" get 401
    record: bool = True  # keep request bodies (tests); the benchmark turns it off
    reject_fields: tuple[str, ...] = ()  # answer 400 naming the field, as strict servers (OpenAI) do
    reject_status: int = 400  # 422 as `transformers serve` (FastAPI) does
    serial: bool = False  # work on one request at a time, the others wait in line (a server with no batching)
    roots: dict[str, str] = field(default_factory=dict)  # model id -> "root" (vLLM: the weights' path)
    # a careless server: put the Authorization header it got into every answer and error body (to check
    # that the client never stores or prints a credential it sees echoed)
    echo_auth: bool = False
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self):
        self.attempts: Counter[str] = Counter()  # prompt -> requests seen
        self.answered: Counter[str] = Counter()  # prompt -> successful answers sent
        self.faults_sent: Counter[str] = Counter()
        self.requests: list[tuple[str, dict]] = []  # (path, body) when record is on
        self.auth_headers: Counter[str] = Counter()
        self.abandoned = 0  # requests whose client hung up before the answer (the handler was cancelled)
        self.max_working = 0  # the most requests generating at once
        self._working = 0
        self._line: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- the app ----------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completion)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        if (denied := self._deny(request)) is not None:
            return denied
        data = [{"id": m, "object": "model", **({"root": self.roots[m]} if m in self.roots else {})}
                for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    def _deny(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        self.auth_headers[header] += 1
        if self.api_key is not None and header != f"Bearer {self.api_key}":
            return _error(401, "invalid API key " + self._echo(request) + self.faults.error_body,
                          "AuthenticationError")
        return None

    async def _answer(self, request: web.Request, chat: bool) -> web.StreamResponse:
        if (denied := self._deny(request)) is not None:
            return denied
        body = await request.json()
        if self.record:
            self.requests.append((request.path, body))
        for name in self.reject_fields:
            if name in body:
                if self.reject_status == 422:  # FastAPI's validation error shape
                    return web.json_response({"detail": [{"type": "extra_forbidden", "loc": ["body", name],
                                                          "msg": "Extra inputs are not permitted"}]},
                                             status=422)
                return _error(self.reject_status, f"Unrecognized request argument supplied: {name}",
                              "BadRequestError")
        if body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if chat and body.get("continue_final_message"):
            prompt = body["messages"][-2]["content"]
        self.attempts[prompt] += 1
        fault = self.faults.pick(prompt, self.attempts[prompt])
        if fault:
            self.faults_sent[fault] += 1
        try:
            await self._work()
            if fault == "hang":
                await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.abandoned += 1
            raise
        if fault == "server_error":
            return _error(500, "internal error " + self.faults.error_body, "InternalServerError")
        if fault == "rate_limit":
            response = _error(429, "rate limited", "RateLimitError")
            response.headers["Retry-After"] = self.faults.retry_after
            return response
        if fault == "malformed":
            return web.Response(text='{"choices": [{"message": ', content_type="application/json")
        if fault == "drop":
            request.transport.abort()  # the client sees the connection close with no response
            return web.Response()
        if fault == "empty":
            return web.json_response({"id": "x", "object": "chat.completion", "choices": []})
        if fault and fault.startswith("status:"):
            return _error(int(fault.split(":", 1)[1]), "forced error " + self._echo(request)
                          + self.faults.error_body, "Error")
        self.answered[prompt] += 1
        text = reply_for(prompt) + (" " + self._echo(request) if self.echo_auth else "")
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                 "total_tokens": len(prompt.split()) + len(text.split())}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        kind = "chat.completion" if chat else "text_completion"
        return web.json_response({"id": "cmpl-stub", "object": kind, "model": body["model"],
                                  "choices": [choice], "usage": usage})

    def _echo(self, request: web.Request) -> str:
        """The credential itself, without its "Authorization: Bearer" frame (which alone would be masked)."""
        if not self.echo_auth:
            return ""
        credential = request.headers.get("Authorization", "").partition(" ")[2]
        return f"(you sent {credential}, {base64.b64decode(credential).decode(errors='replace')})" \
            if request.headers.get("Authorization", "").startswith("Basic ") else f"(you sent {credential})"

    async def _work(self) -> None:
        if not self.serial:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return
        if self._line is None:
            self._line = asyncio.Lock()
        async with self._line:  # FIFO: the requests behind wait their turn
            self._working += 1
            self.max_working = max(self.max_working, self._working)
            try:
                await asyncio.sleep(self.latency_s)
            finally:
                self._working -= 1

    # -- running it -------------------------------------------------------------------------------------
    async def start_async(self) -> None:
        # handler_cancellation: a hung handler ends when the client gives up on it
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=0.5,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port the OS picked for port 0

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self) -> StubServer:
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop_async())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="stub-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stub server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _error(status: int, message: str, kind: str) -> web.Response:
    # vLLM's error shape; OpenAI nests the same fields under "error"
    return web.json_response({"object": "error", "message": message, "type": kind, "code": status},
                             status=status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--model", action="append", help="model name served (repeatable)")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="share of first attempts answered 429")
    parser.add_argument("--retry-after", default="1", help="Retry-After header sent with 429")
    parser.add_argument("--serial", action="store_true", help="generate one request at a time")
    args = parser.parse_args()
    faults = Faults(rate_limit=args.rate_limit, retry_after=args.retry_after, max_failures=1)
    stub = StubServer(models=args.model or ["stub-model"], latency_s=args.latency, record=False,
                      port=args.port, faults=faults, serial=args.serial)

    async def serve() -> None:
        await stub.start_async()
        print(stub.url, flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
