"""Server URLs of OpenAI-compatible models, parsed strictly: a typo is one error line, never a silent default
host, and credentials written in a URL are taken out of it and registered as secrets.

Kept apart from the HTTP backend so that checking a model string imports no HTTP code.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import MijaError
from ..store.secrets import register_secret

DEFAULT_URL = "http://127.0.0.1:8000/v1"  # the documented default: `openai:MODEL` with no @URL

_URL_AFTER_AT = re.compile(r"@(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def parse_target(target: str) -> tuple[str, list[str]]:
    """``MODEL[@URL[,URL...]]`` -> (model, urls). No ``@`` means the default local server; otherwise the
    model ends at the first ``@`` that starts a URL (a model name holding ``@`` is followed by its URL), and
    every URL after it must be a valid http(s) URL: a typo never falls back to some default host."""
    if "@" not in target:
        if not target:
            raise MijaError("openai model string names no model")
        return target, [DEFAULT_URL]
    found = _URL_AFTER_AT.search(target)
    if found is None:
        raise MijaError(f"openai model '{target}': what follows '@' is not an http(s) URL (write "
                        "openai:MODEL@http://HOST:PORT/v1; a model name holding '@' needs its URL after it)")
    model, urls = target[:found.start()], target[found.end():]
    if not model:
        raise MijaError(f"openai model '{target}' names no model before '@'")
    parts = [u.strip() for u in urls.split(",")]
    if not all(parts):
        raise MijaError(f"openai model '{target}': an empty URL in the comma-separated list")
    return model, [check_url(u, model) for u in parts]


def check_url(url: str, model: str = "") -> str:
    """``url`` itself when it is an http(s) URL with a host (and a valid port), else one MijaError line."""
    where = f"model '{model}': " if model else ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise MijaError(f"{where}server URL '{url}' is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise MijaError(f"{where}server URL '{url}' must start with http:// or https://")
    if not parts.hostname or any(c.isspace() for c in url):
        raise MijaError(f"{where}server URL '{url}' names no valid host (e.g. http://127.0.0.1:8000/v1)")
    if parts.query or parts.fragment:
        raise MijaError(f"{where}server URL '{url}' must not hold a query or fragment; give the base URL "
                        "(e.g. http://127.0.0.1:8000/v1)")
    return url


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without ``user:password@``, the basic-auth header value or None). The password, the pair
    and its encoding are registered as secrets, so they are masked wherever a server echoes them."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    pair = f"{user}:{password}"
    encoded = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    for value in (password, parts.password or "", pair, encoded):
        register_secret(value)
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")), f"Basic {encoded}"
