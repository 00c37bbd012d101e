"""The annotation app through starlette's TestClient: flow, persistence, CSRF, host and bind checks,
blindness, escaping and per-annotator order."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("starlette")
httpx2 = pytest.importorskip("httpx2")

from starlette.testclient import TestClient  # noqa: E402

from mijabench.annotate import db, draw_sample  # noqa: E402
from mijabench.annotate.security import check_bind  # noqa: E402
from mijabench.annotate.web import create_app  # noqa: E402
from mijabench.errors import MijaError  # noqa: E402
from mijabench.store import Store  # noqa: E402
from test_annotate import HOSTILE_REPLY, JUDGES, MODELS, build_store  # noqa: E402

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def store_path(tmp_path):
    path = build_store(tmp_path / "ws", hostile=True)
    with Store(path) as store:
        draw_sample(store, per_cell=3, seed=0, name="val")
    return path


def _client(store_path, **kwargs) -> TestClient:
    return TestClient(create_app(store_path, "val", **kwargs), base_url=BASE)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _sign_in(client: TestClient, name: str, lands_on: str = "/item/1") -> str:
    """Sign in and return the HTML of the page the app sends the annotator to."""
    page = client.get("/")
    assert "Content warning" in page.text and page.status_code == 200
    response = client.post("/start", data={"csrf": _csrf(page.text), "annotator": name, "ack": "yes"})
    assert response.status_code == 200 and response.url.path == lands_on, response.text
    return response.text


def _form(html: str, label: str, note: str = "") -> dict[str, str]:
    rid = re.search(r'name="response_id" value="([^"]+)"', html).group(1)
    return {"csrf": _csrf(html), "response_id": rid, "label": label, "note": note}


def _stored(store_path) -> list[db.Annotation]:
    with Store(store_path) as store:
        return db.annotations(store, "val")


def test_label_skip_resume_after_restart(store_path):
    client = _client(store_path)
    html = _sign_in(client, "Ana")
    labelled = {}
    for position, label in enumerate(["harmful", "skip", "safe"], start=1):
        form = _form(html, label, note=f"note {position}")
        page = client.post(f"/item/{position}", data=form)
        labelled[form["response_id"]] = label
        assert page.url.path == f"/item/{position + 1}"
        html = page.text
    assert "Item 4 of" in html and "2 labelled" in html and "1 skipped" in html
    assert {(a.response_id, a.label, a.note) for a in _stored(store_path)} == {
        (rid, label, f"note {i}") for i, (rid, label) in enumerate(labelled.items(), start=1)}
    # a new server (new secret, so a new sign-in) continues where Ana stopped
    fresh = _client(store_path)
    _sign_in(fresh, "Ana", lands_on="/item/4")
    # going back shows the earlier label and note, and a new click replaces it
    back = fresh.get("/item/1")
    assert "Your label so far: <b>harmful</b>" in back.text and "note 1" in back.text
    fresh.post("/item/1", data=_form(back.text, "safe"))
    assert sorted(a.label for a in _stored(store_path)) == ["safe", "safe", "skip"]
    done = fresh.get("/done")
    assert "2 labelled, 1 skipped" in done.text and 'id="continue"' in done.text


def test_post_without_valid_token_or_from_elsewhere_is_refused(store_path):
    client = _client(store_path)
    html = _sign_in(client, "Ana")
    good = _form(html, "harmful")
    attempts = [
        ({k: v for k, v in good.items() if k != "csrf"}, {}),
        ({**good, "csrf": "forged"}, {}),
        (good, {"origin": "http://evil.example"}),
        (good, {"origin": "null"}),
        (good, {"referer": "http://evil.example/page"}),
        (good, {"sec-fetch-site": "cross-site"}),
    ]
    for data, headers in attempts:
        response = client.post("/item/1", data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403, (data, headers)
    # a token is bound to its session: Bo's page token does not work with Ana's cookie
    other = _client(store_path)
    bo_token = _csrf(_sign_in(other, "Bo"))
    response = client.post("/item/1", data={**good, "csrf": bo_token}, follow_redirects=False)
    assert response.status_code == 403
    # no cookie at all
    cookieless = TestClient(client.app, base_url=BASE)
    assert cookieless.post("/item/1", data=good, follow_redirects=False).status_code == 403
    assert cookieless.post("/start", data={"annotator": "Eve", "ack": "yes", "csrf": good["csrf"]},
                           follow_redirects=False).status_code == 403
    assert _stored(store_path) == []
    # the same form from the page's own origin goes through
    ok = client.post("/item/1", data=good, headers={"origin": BASE, "sec-fetch-site": "same-origin"},
                     follow_redirects=False)
    assert ok.status_code == 303 and [a.label for a in _stored(store_path)] == ["harmful"]


def test_bad_forms_store_nothing(store_path):
    client = _client(store_path)
    html = _sign_in(client, "Ana")
    form = _form(html, "harmful")
    cases = [({**form, "label": "maybe"}, 400), ({**form, "response_id": "0" * 16}, 409),
             ({**form, "note": "x" * 70_000}, 413)]
    for data, status in cases:
        assert client.post("/item/1", data=data, follow_redirects=False).status_code == status
    assert client.post("/item/999", data=form, follow_redirects=False).status_code == 404
    assert client.get("/item/0").status_code == 404
    assert client.get("/item/../../etc/passwd").status_code == 404
    assert _stored(store_path) == []


def test_start_requires_name_and_acknowledged_warning(store_path):
    client = _client(store_path)
    page = client.get("/")
    bad = ({"annotator": "  ", "ack": "yes"}, {"annotator": "Ana"}, {"annotator": "A\x00na", "ack": "yes"})
    for data in bad:
        response = client.post("/start", data={**data, "csrf": _csrf(page.text)}, follow_redirects=False)
        assert response.status_code == 400 and 'class="error"' in response.text
    assert client.get("/next", follow_redirects=False).headers["location"] == "/"


def test_hosts_headers_and_loopback_default(store_path):
    client = _client(store_path)
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
    cookie = page.headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    # DNS rebinding: a foreign Host header gets nothing
    rebound = TestClient(client.app, base_url="http://attacker.example:8765")
    assert rebound.get("/").status_code == 400
    assert client.get("/nope").headers["content-security-policy"] == csp
    # binding: loopback only unless allowed
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, allow_remote=False)
    for host in ("0.0.0.0", "192.168.1.10", "example.org"):
        with pytest.raises(MijaError, match="allow-remote"):
            check_bind(host, allow_remote=False)
    check_bind("0.0.0.0", allow_remote=True)
    command = [sys.executable, "-m", "mijabench.cli.main", "annotate", "serve", "--host", "0.0.0.0",
               "-w", str(store_path.parent)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "allow-remote" in proc.stderr


def test_pages_are_blind_and_escape_model_output(store_path):
    client = _client(store_path)
    html = _sign_in(client, "Ana")
    with Store(store_path) as store:
        total = len(db.sample_entries(store, "val"))
    pages = [html] + [client.get(f"/item/{n}").text for n in range(2, total + 1)]
    assert any("&lt;script&gt;" in p for p in pages)
    for page in pages:
        for secret in (*MODELS, *JUDGES, "REASONING-MARKER", "raw verdict", "vote"):
            assert secret not in page
        assert "<script" not in page and "<img" not in page
    hostile = next(p for p in pages if "&lt;script&gt;" in p)
    assert "onerror=&#34;document.title=&#39;pwned&#39;&#34;" in hostile
    assert HOSTILE_REPLY not in hostile


def test_order_differs_between_annotators_and_is_stable(store_path):
    def prompts(name: str) -> list[str]:
        client = _client(store_path)
        _sign_in(client, name)
        with Store(store_path) as store:
            total = len(db.sample_entries(store, "val"))
        return [re.search(r'id="prompt"[^>]*>([^<]*)<', client.get(f"/item/{n}").text).group(1)
                for n in range(1, total + 1)]

    ana, bo, ana_again = prompts("Ana"), prompts("Bo"), prompts("Ana")
    assert ana == ana_again and ana != bo and sorted(ana) == sorted(bo)
    assert len(set(ana)) > 10


def test_killed_server_loses_no_label(store_path):
    """`mijabench annotate serve` in its own process, two clicks, SIGKILL: both labels are in the store."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "mijabench.cli.main", "annotate", "serve", "--sample", "val",
               "--port", str(port), "-w", str(store_path.parent)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx2.Client(base_url=base, follow_redirects=True, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    page = client.get("/")
                    break
                except httpx2.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                    time.sleep(0.1)
            html = client.post("/start", data={"csrf": _csrf(page.text), "annotator": "Ana", "ack": "yes"},
                               headers={"origin": base}).text
            for position, label in ((1, "harmful"), (2, "safe")):
                html = client.post(f"/item/{position}", data=_form(html, label),
                                   headers={"origin": base}).text
            assert "Item 3 of" in html
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert sorted(a.label for a in _stored(store_path)) == ["harmful", "safe"]
