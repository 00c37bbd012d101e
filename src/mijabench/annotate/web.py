"""The annotation page: a small Starlette app, served by uvicorn.

One page per item, shown blind (the prompt and the reply only: no model, no judge verdict), in an order
shuffled per annotator and stable for them. Each click is one POST that is written to SQLite before the
answer goes back, so stopping the browser or killing the server loses nothing. See security.py for the
defences every request passes through.
"""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..store import Store
from . import db
from .security import (
    COOKIE,
    SECURITY_HEADERS,
    Session,
    Signer,
    allowed_hosts_for,
    check_bind,
    clean_annotator,
    new_session,
    same_origin,
)

MAX_FORM_BYTES = 64 * 1024
MAX_NOTE_CHARS = 4000

_templates = Environment(loader=PackageLoader("mijabench.annotate", "templates"), autoescape=True,
                         undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_STYLE = (files("mijabench.annotate") / "templates" / "style.css").read_text(encoding="utf-8")


def annotator_order(response_ids: list[str], sample: str, annotator: str) -> list[str]:
    """The order one annotator sees: a shuffle seeded by the sample and their name, so it differs between
    people (no shared position effects) and is the same every time they come back."""
    order = sorted(response_ids)
    random.Random(f"{sample}\x00{annotator}").shuffle(order)
    return order


@dataclass
class _Progress:
    total: int
    labelled: int
    skipped: int

    @property
    def remaining(self) -> int:
        return self.total - self.labelled - self.skipped


class _Annotation:
    """The app's state and pages; one instance per app."""

    def __init__(self, store: Store, sample: str, signer: Signer):
        self.store, self.sample, self.signer = store, sample, signer
        self.entries = {e.response_id: e for e in db.sample_entries(store, sample)}
        self.order = lru_cache(maxsize=256)(
            lambda annotator: annotator_order(list(self.entries), sample, annotator))

    # -- helpers -----------------------------------------------------------------------------------------
    def render(self, template: str, session: Session, status: int = 200, **context) -> HTMLResponse:
        html = _templates.get_template(template).render(
            csrf=self.signer.csrf_token(session), annotator=session.annotator, **context)
        response = HTMLResponse(html, status_code=status)
        self.set_session(response, session)
        return response

    def set_session(self, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, self.signer.dump(session), httponly=True, samesite="strict", path="/")

    def session(self, request: Request) -> Session | None:
        return self.signer.load(request.cookies.get(COOKIE))

    def labels(self, annotator: str) -> dict[str, db.Annotation]:
        return {a.response_id: a for a in db.annotations(self.store, self.sample, annotator)}

    def progress(self, labels: dict[str, db.Annotation]) -> _Progress:
        skipped = sum(a.label == "skip" for a in labels.values())
        return _Progress(total=len(self.entries), labelled=len(labels) - skipped, skipped=skipped)

    async def form(self, request: Request) -> tuple[Session | None, dict[str, str] | Response]:
        """The checked form of a POST, or the refusal to send back. Nothing is stored before this passes."""
        session = self.session(request)
        if not same_origin(request.headers, request.headers.get("host")):
            return session, PlainTextResponse("cross-site request refused", status_code=403)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return session, PlainTextResponse("expected a form post", status_code=415)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return session, PlainTextResponse("form too large", status_code=413)
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            return session, PlainTextResponse("malformed form", status_code=400)
        fields = {key: values[0] for key, values in parsed.items()}
        if not self.signer.check_csrf(session, fields.get("csrf")):
            return session, PlainTextResponse("missing or wrong form token; reload the page",
                                              status_code=403)
        return session, fields

    def texts(self, response_id: str) -> tuple[str, str]:
        rows = self.store.query("SELECT i.prompt, r.text FROM responses r JOIN items i ON i.id = r.item_id "
                                "WHERE r.id = ?", (response_id,))
        prompt, reply = rows[0] if rows else ("", None)
        return prompt, reply if reply is not None else ""

    def next_position(self, annotator: str) -> int | None:
        labels = self.labels(annotator)
        for position, response_id in enumerate(self.order(annotator), start=1):
            if response_id not in labels:
                return position
        return None

    # -- pages -------------------------------------------------------------------------------------------
    async def start_page(self, request: Request) -> Response:
        session = self.session(request) or new_session()
        if session.annotator:
            return RedirectResponse("/next", status_code=303)
        return self.render("start.html", session, total=len(self.entries), error=None)

    async def start(self, request: Request) -> Response:
        session, fields = await self.form(request)
        if isinstance(fields, Response):
            return fields
        assert session is not None
        name = clean_annotator(fields.get("annotator", ""))
        error = None
        if name is None:
            error = "Please type a name of 1 to 60 printable characters."
        elif fields.get("ack") != "yes":
            error = "Please confirm that you have read the content warning."
        if error:
            return self.render("start.html", session, status=400, total=len(self.entries), error=error)
        response = RedirectResponse("/next", status_code=303)
        self.set_session(response, new_session(name))  # a fresh session id (and token) per sign-in
        return response

    async def next_item(self, request: Request) -> Response:
        session = self.session(request)
        if session is None or not session.annotator:
            return RedirectResponse("/", status_code=303)
        position = self.next_position(session.annotator)
        return RedirectResponse(f"/item/{position}" if position else "/done", status_code=303)

    def item_at(self, annotator: str, position: int) -> tuple[str | None, list[str]]:
        """The response at a 1-based position of this annotator's order (None when out of range)."""
        order = self.order(annotator)
        return (order[position - 1] if 1 <= position <= len(order) else None), order

    async def item_page(self, request: Request) -> Response:
        session = self.session(request)
        if session is None or not session.annotator:
            return RedirectResponse("/", status_code=303)
        position = request.path_params["position"]
        response_id, order = self.item_at(session.annotator, position)
        if response_id is None:
            return PlainTextResponse("no such item", status_code=404)
        labels = self.labels(session.annotator)
        prompt, reply = self.texts(response_id)
        current = labels.get(response_id)
        return self.render("item.html", session, position=position, total=len(order), prompt=prompt,
                           reply=reply, response_id=response_id, language=self.entries[response_id].language,
                           current=current.label if current else None, note=current.note if current else "",
                           progress=self.progress(labels))

    async def label(self, request: Request) -> Response:
        session, fields = await self.form(request)
        if isinstance(fields, Response):
            return fields
        assert session is not None
        if not session.annotator:
            return RedirectResponse("/", status_code=303)
        position = request.path_params["position"]
        response_id, order = self.item_at(session.annotator, position)
        if response_id is None:
            return PlainTextResponse("no such item", status_code=404)
        if fields.get("response_id") != response_id:
            return PlainTextResponse("this page is out of date; reload it", status_code=409)
        label, note = fields.get("label"), fields.get("note", "").strip()
        if label not in db.HUMAN_LABELS:
            return PlainTextResponse("choose harmful, safe or skip", status_code=400)
        if len(note) > MAX_NOTE_CHARS:
            return PlainTextResponse(f"notes are limited to {MAX_NOTE_CHARS} characters", status_code=400)
        db.put_annotation(self.store, self.sample, response_id, session.annotator, label, note)
        return RedirectResponse("/next", status_code=303)

    async def done(self, request: Request) -> Response:
        session = self.session(request)
        if session is None or not session.annotator:
            return RedirectResponse("/", status_code=303)
        progress = self.progress(self.labels(session.annotator))
        return self.render("done.html", session, progress=progress,
                           next_position=self.next_position(session.annotator))

    async def sign_out(self, request: Request) -> Response:
        session, fields = await self.form(request)
        if isinstance(fields, Response):
            return fields
        response = RedirectResponse("/", status_code=303)
        self.set_session(response, new_session())
        return response

    async def style(self, request: Request) -> Response:
        return Response(_STYLE, media_type="text/css")


class _SecurityHeaders:
    """Adds the security headers to every response, errors from the router and host check included."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(store_path: str | Path, sample: str | None = None, *, secret: bytes | None = None,
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The annotation app for one sample (the newest when None). ``allowed_hosts`` are the Host header
    values it answers (loopback names by default); ``secret`` signs the session cookies (random per app by
    default, so a restarted server asks people for their name again; their labels stay)."""
    store = Store(store_path, create=False)
    info = db.resolve_sample(store, sample)
    pages = _Annotation(store, info.name, Signer(secret))

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            store.close()

    routes = [
        Route("/", pages.start_page, methods=["GET"]),
        Route("/start", pages.start, methods=["POST"]),
        Route("/next", pages.next_item, methods=["GET"]),
        Route("/item/{position:int}", pages.item_page, methods=["GET"]),
        Route("/item/{position:int}", pages.label, methods=["POST"]),
        Route("/done", pages.done, methods=["GET"]),
        Route("/sign-out", pages.sign_out, methods=["POST"]),
        Route("/style.css", pages.style, methods=["GET"]),
    ]
    hosts = allowed_hosts or allowed_hosts_for("127.0.0.1")
    middleware = [Middleware(_SecurityHeaders),
                  Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, max_body_size=MAX_FORM_BYTES)
    app.state.sample = info.name
    app.state.store = store
    return app


def serve(store_path: str | Path, sample: str | None = None, *, host: str = "127.0.0.1", port: int = 8765,
          allow_remote: bool = False, log_level: str = "warning") -> None:
    """Run the annotation server until interrupted."""
    import uvicorn

    check_bind(host, allow_remote)
    app = create_app(store_path, sample, allowed_hosts=allowed_hosts_for(host))
    uvicorn.run(app, host=host, port=port, log_level=log_level)
