"""The annotation server's defences, kept apart from the pages so each can be read and tested alone.

- Sessions live in a cookie signed with HMAC-SHA256 under a per-server secret: a random session id plus
  the annotator's name. The cookie is HttpOnly and SameSite=Strict.
- Every form carries a CSRF token derived from the session id (HMAC again), and a POST must also come
  from the page's own origin when the browser says where it comes from (Origin, Referer, Sec-Fetch-Site).
- The server binds to loopback unless the user explicitly allows otherwise, and only answers requests whose
  Host header names it (which defeats DNS rebinding).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import MijaError

COOKIE = "mija_session"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# No scripts, no images, no frames: the pages are plain HTML forms with one same-origin style sheet.
CSP = ("default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
       "img-src 'none'; script-src 'none'; object-src 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",  # the pages hold offensive text; keep them out of caches
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    annotator: str | None = None


class Signer:
    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)

    def _mac(self, message: bytes) -> str:
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def dump(self, session: Session) -> str:
        payload = json.dumps({"sid": session.sid, "annotator": session.annotator}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
        return f"{body}.{self._mac(body.encode())}"

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None when it is missing, malformed or not signed by us."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            sid, annotator = data["sid"], data["annotator"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(sid, str) or not (annotator is None or isinstance(annotator, str)):
            return None
        return Session(sid=sid, annotator=annotator)

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf|{session.sid}".encode())

    def check_csrf(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(session))


def new_session(annotator: str | None = None) -> Session:
    return Session(sid=secrets.token_urlsafe(16), annotator=annotator)


def same_origin(headers, host: str | None) -> bool:
    """False when the browser tells us the request comes from another site; True when it comes from here
    or says nothing (the CSRF token still has to match)."""
    if not host:
        return False
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()
    referer = headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc.lower() == host.lower()
    return True


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise MijaError(f"refusing to serve on {host}: the annotation page shows offensive model output and "
                        "has no login; bind to 127.0.0.1 or pass --allow-remote if you really mean it")


def allowed_hosts_for(host: str) -> list[str]:
    """Host header values the server answers to: its loopback names, or anything when bound to all
    interfaces on purpose."""
    host = host.strip("[]")
    if is_loopback(host):
        return list(LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::"):
        return ["*"]
    return [host, *LOOPBACK_NAMES]


def clean_annotator(name: str) -> str | None:
    """A display name typed by a person, tidied; None when unusable."""
    name = " ".join(name.split())
    if not 1 <= len(name) <= 60 or not name.isprintable():
        return None
    return name
