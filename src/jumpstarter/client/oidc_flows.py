"""The interactive OIDC logins: the browser's authorization code flow with PKCE (a loopback server
receives the redirect) and the RFC 8628 device flow (the user logs in elsewhere, the CLI polls).

Both tell the user what to do through `announce` (the CLI prints to stderr), so a headless user can
always finish the login by hand."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jumpstarter.client.oidc import DEVICE_CODE_EXPIRED, OidcClient, Tokens, span
from jumpstarter.errors import ConfigurationError, UnauthenticatedError

#: How long the browser flow waits for the redirect back.
BROWSER_TIMEOUT = 300.0
#: RFC 8628 section 3.5: after `slow_down`, poll this much less often.
SLOW_DOWN_STEP = 5.0


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) of RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def browser_login(oidc: OidcClient, scopes: list[str], port: int, announce: Callable[[str], None], *,
                  open_browser: Callable[[str], Any] = webbrowser.open, timeout: float = BROWSER_TIMEOUT) -> Tokens:
    """Log in in the user's browser: listen on 127.0.0.1:`port` (0: any), open the issuer's login
    page, take the code from the redirect to `/callback` and exchange it (authorization code + PKCE)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    with _CallbackServer(port) as callback:
        redirect_uri = f"http://localhost:{callback.port}/callback"  # as upstream registers it at issuers
        url = oidc.authorization_url(redirect_uri, state, challenge, scopes)
        announce(f"Log in in your browser; if it does not open, open this URL:\n{url}")
        open_browser(url)
        answer = callback.wait(timeout)
    if answer is None:
        raise UnauthenticatedError(f"unauthenticated: no login came back from the browser within {span(timeout)}")
    if "error" in answer:
        detail = f"{answer['error']}: {answer['error_description']}" if answer.get("error_description") \
            else answer["error"]
        raise UnauthenticatedError(f"unauthenticated: {oidc.issuer} refused the login in the browser ({detail})")
    if answer.get("state") != state:
        raise UnauthenticatedError("unauthenticated: the browser came back with another login's state "
                                   "(a stale or forged redirect); log in again")
    if not answer.get("code"):
        raise UnauthenticatedError("unauthenticated: the browser came back without an authorization code")
    return oidc.authorization_code(answer["code"], redirect_uri, verifier)


def device_login(oidc: OidcClient, scopes: list[str], announce: Callable[[str], None], *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> Tokens:
    """Log in with the RFC 8628 device flow: show where to enter which code, then poll the token
    endpoint every `interval` seconds (5 s more after each `slow_down`) until the device code expires."""
    grant = oidc.device_authorization(scopes)
    if grant.verification_uri_complete:
        announce(f"To log in, open {grant.verification_uri_complete}\n"
                 f"and check that it shows the code {grant.user_code}")
    else:
        announce(f"To log in, open {grant.verification_uri} and enter the code {grant.user_code}")
    deadline = clock() + grant.expires_in
    interval = grant.interval
    while clock() + interval < deadline:
        sleep(interval)
        polled = oidc.device(grant.device_code)
        if isinstance(polled, Tokens):
            return polled
        if polled == "slow_down":
            interval += SLOW_DOWN_STEP
    raise UnauthenticatedError(DEVICE_CODE_EXPIRED)


class _CallbackServer:
    """A loopback HTTP server, in a thread, keeping the query of the first request to `/callback`
    (the browser opener may wait for the page, so the server must already be answering)."""

    def __init__(self, port: int) -> None:
        self.answer: dict[str, str] | None = None
        self.arrived = threading.Event()
        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), _callback_handler(self))
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on 127.0.0.1:{port} for the login callback: {exc}") from None
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), name="oidc-callback",
                                        daemon=True)

    def __enter__(self) -> _CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def receive(self, query: str) -> bool:
        """Keep the first callback's parameters; False for any later one."""
        if self.arrived.is_set():
            return False
        self.answer = {key: values[0] for key, values in parse_qs(query).items()}
        self.arrived.set()
        return True

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The callback's parameters, or None when none came within `timeout` seconds."""
        return self.answer if self.arrived.wait(timeout) else None


def _callback_handler(callback: _CallbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/callback":
                self._page(404, "Not found", "This is the Jumpstarter login callback.")
            elif not callback.receive(parts.query):
                self._page(409, "Already done", "This login has finished already; you may close this window.")
            elif callback.answer and "error" in callback.answer:
                self._page(200, "Login failed", f"The identity provider said: {callback.answer['error']}. "
                           "You may close this window; jmp login tells what happened.")
            else:
                self._page(200, "Logged in", "You may close this window and go back to the terminal.")

        def _page(self, status: int, title: str, text: str) -> None:
            data = (f"<!doctype html><html><head><meta charset='utf-8'><title>Jumpstarter: {html.escape(title)}"
                    f"</title></head><body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
                    ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
