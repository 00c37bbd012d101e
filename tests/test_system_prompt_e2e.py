"""One system prompt, end to end: the same items, with a system prompt, run through the local transformers
backend and through the OpenAI-compatible backend against a loopback server that holds the same weights and
renders the same chat template itself. Greedy replies must be identical: a system prompt sent twice, or in
another place, changes them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mijabench.backends.registry import parse_model
from mijabench.records import BenchmarkItem
from mijabench.run.generate import run_items
from test_backend_local import tiny_model_dir  # noqa: F401  (the module-scoped tiny model)

web = pytest.importorskip("aiohttp.web")

PROMPTS = ["Tell me a story.", "one two three", "The lazy dog sleeps all day long.", "Hello there"]
SYSTEM = "Answer in one short line."


class ChatServer:
    """``/v1/models`` and ``/v1/chat/completions`` over a transformers model: the server's own rendering
    (``apply_chat_template`` on the messages it receives) and plain greedy ``generate``, one request at a
    time, as a minimal OpenAI-compatible server does."""

    def __init__(self, folder):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder)
        self.seen: list[list[dict]] = []
        self.loop = asyncio.new_event_loop()
        self.runner = None
        self.port = 0

    def _generate(self, messages, max_tokens):
        import torch
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or 0)
        new = out[0, ids["input_ids"].shape[1]:]
        eos = self.tokenizer.eos_token_id
        stopped = eos is not None and bool((new == eos).any())
        return self.tokenizer.decode(new, skip_special_tokens=True), "stop" if stopped else "length"

    async def _models(self, request):
        return web.json_response({"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    async def _chat(self, request):
        body = await request.json()
        self.seen.append(body["messages"])
        text, finish = self._generate(body["messages"], body["max_tokens"])
        return web.json_response({"id": "x", "object": "chat.completion", "model": "tiny", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]})

    def __enter__(self):
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        started = threading.Event()

        async def start():
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            started.set()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        assert started.wait(30)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_greedy_replies_with_a_system_prompt_match_a_server_with_the_same_weights(
        tiny_model_dir, store):  # noqa: F811
    items = [BenchmarkItem(language="en", group="women", seed_text=f"s{i}", scenario_category="history",
                           scenario_text="x", strategy="persona_assignment", prompt=p)
             for i, p in enumerate(PROMPTS)]
    settings = {"max_tokens": 12, "system_prompt": SYSTEM}
    local = parse_model(f"hf:{tiny_model_dir}", **settings)
    with ChatServer(tiny_model_dir) as server:
        remote = parse_model(f"openai:tiny@http://127.0.0.1:{server.port}/v1", **settings)
        run_items(store, items, [local, remote], bench="b", progress=False)
        # the server got the system prompt once, first, before the user's message
        assert len(server.seen) == len(PROMPTS)
        assert all([m["role"] for m in msgs] == ["system", "user"] and msgs[0]["content"] == SYSTEM
                   for msgs in server.seen)
    replies: dict[str, dict[str, str]] = {}
    for r in store.responses():
        assert r.ok, r.error
        replies.setdefault(r.model, {})[r.item_id] = r.text
    assert set(replies) == {local.name, remote.name}
    assert replies[local.name] == replies[remote.name]
    assert any(text.strip() for text in replies[local.name].values())  # the replies are not all empty
