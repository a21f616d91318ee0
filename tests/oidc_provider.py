"""A tiny OpenID Connect identity provider for tests: HTTPS on loopback, port 0, in a thread.

It serves discovery, a JWKS of generated RSA keys and a token endpoint with the password,
refresh-token and token-exchange (RFC 8693, Dex's `connector_id`) grants for fixed users, an
authorization endpoint that approves "alice" at once (PKCE S256 checked at the token endpoint) and
a device authorization endpoint (RFC 8628) whose polls are answered from a script of errors. It is the
external system at the controller's and `jmp login`'s boundary, so tests run a real one. It counts
requests per path, can delay its JWKS answers and mints arbitrary tokens for the failure cases.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from jumpstarter.direct.tls import generate_self_signed

CLIENT_ID = "jumpstarter-cli"
USERS = {"alice": "wonderland", "bob": "builder"}
#: `subject_token` the token-exchange grant accepts, per connector, and the user it stands for.
UPSTREAM_TOKENS = {("ldap", "ldap-token-of-alice"): "alice"}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


class OidcProvider:
    """A running identity provider; use as a context manager."""

    def __init__(self, tmp: Path, jwks_delay: float = 0.0) -> None:
        tls = generate_self_signed(["127.0.0.1"])
        self.ca_pem = tls.cert_pem.decode()
        self.ca_file = tmp / "idp-ca.pem"
        self.ca_file.write_text(self.ca_pem)
        (tmp / "idp-key.pem").write_bytes(tls.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, tmp / "idp-key.pem")
        self.jwks_delay = jwks_delay
        self.requests: Counter[str] = Counter()
        self.refresh_tokens: dict[str, str] = {}
        #: The authorization endpoint redirects with this `error` instead of a code, when set.
        self.authorize_error: str | None = None
        #: ... or with this `state` instead of the one asked for, when set.
        self.authorize_state: str | None = None
        #: code -> (redirect_uri, code_challenge, scope) of the logins the authorization endpoint approved.
        self.codes: dict[str, tuple[str, str, str]] = {}
        #: What the token endpoint answers to device-code polls before it issues alice's tokens; an
        #: answer other than authorization_pending/slow_down ends the login (access_denied, ...).
        self.device_answers: list[str] = []
        self.device_interval = 1
        self.device_codes: dict[str, str] = {}
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate_key()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="oidc-provider",
                                        daemon=True)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rotate_key(self) -> str:
        """Publish a new signing key and sign with it from now on; returns its kid."""
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        """The published key set."""
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def mint(self, user: str = "alice", *, aud: str | list[str] = CLIENT_ID, lifetime: float = 3600,
             kid: str | None = None, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        """A token of `user` (claims can be overridden); `key` signs it instead of the published one."""
        now = int(time.time())
        body = {
            "iss": self.url, "sub": f"CgV{user}EgVsb2NhbA", "aud": aud, "iat": now, "exp": now + int(lifetime),
            "preferred_username": user, "email": f"{user}@example.com", "email_verified": True,
            "jti": uuid.uuid4().hex, **claims,
        }
        signer = key or self.keys[kid or self.kid]
        return jwt.encode(body, signer, algorithm="RS256", headers={"kid": kid or self.kid})

    # ---- the token endpoint ----------------------------------------------------------------------

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of a token request."""
        if form.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client", "error_description": "unknown client"}
        grant_type = form.get("grant_type")
        scope = form.get("scope", "")
        if grant_type == "password":
            user = form.get("username", "")
            if USERS.get(user) != form.get("password"):
                return 401, {"error": "invalid_grant", "error_description": "invalid username or password"}
        elif grant_type == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), "")
            if not user:
                return 400, {"error": "invalid_grant", "error_description": "unknown refresh token"}
        elif grant_type == TOKEN_EXCHANGE:
            found = UPSTREAM_TOKENS.get((form.get("connector_id", ""), form.get("subject_token", "")))
            if found is None:
                return 401, {"error": "invalid_grant", "error_description": "subject token not accepted"}
            user = found
        elif grant_type == "authorization_code":
            redirect_uri, challenge, scope = self.codes.pop(form.get("code", ""), ("", "", ""))
            if not redirect_uri or redirect_uri != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "unknown code or other redirect_uri"}
            if s256(form.get("code_verifier", "")) != challenge:
                return 400, {"error": "invalid_grant", "error_description": "code_verifier does not match"}
            user = "alice"
        elif grant_type == DEVICE_CODE:
            if form.get("device_code") not in self.device_codes:
                return 400, {"error": "invalid_grant", "error_description": "unknown device code"}
            if self.device_answers:
                return 400, {"error": self.device_answers.pop(0)}
            user, scope = "alice", self.device_codes.pop(form["device_code"])
        else:
            return 400, {"error": "unsupported_grant_type"}
        body: dict[str, Any] = {
            "access_token": self.mint(user), "id_token": self.mint(user), "token_type": "Bearer",
            "expires_in": 3600,
        }
        if grant_type == TOKEN_EXCHANGE:
            body["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        if "offline_access" in scope.split() or grant_type == "refresh_token":
            refresh = uuid.uuid4().hex
            self.refresh_tokens[refresh] = user
            body["refresh_token"] = refresh
        return 200, body


    # ---- the authorization and device authorization endpoints ------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        """(302, where to redirect) approving alice's login at once, or (400, error body)."""
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != CLIENT_ID or not redirect_uri.startswith("http://localhost:"):
            return 400, {"error": "invalid_request", "error_description": "unknown client or redirect_uri"}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, {"error": "invalid_request", "error_description": "expected response_type=code and S256"}
        answer = {"state": self.authorize_state or query.get("state", "")}
        if self.authorize_error:
            answer["error"] = self.authorize_error
        else:
            answer["code"] = uuid.uuid4().hex
            self.codes[answer["code"]] = (redirect_uri, query.get("code_challenge", ""), query.get("scope", ""))
        return 302, f"{redirect_uri}?{urlencode(answer)}"

    def device_authorization(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) starting a device login."""
        if form.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client"}
        device_code, user_code = uuid.uuid4().hex, uuid.uuid4().hex[:8].upper()
        self.device_codes[device_code] = form.get("scope", "")
        return 200, {
            "device_code": device_code, "user_code": user_code, "verification_uri": f"{self.url}/device",
            "verification_uri_complete": f"{self.url}/device?user_code={user_code}",
            "expires_in": 300, "interval": self.device_interval,
        }


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            provider.requests[self.path] += 1
            url = urlsplit(self.path)
            if url.path == "/auth":
                status, answer = provider.authorize({k: v[0] for k, v in parse_qs(url.query).items()})
                if isinstance(answer, str):
                    self.send_response(status)
                    self.send_header("Location", answer)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._reply(status, answer)
            elif self.path == "/.well-known/openid-configuration":
                self._reply(200, {
                    "issuer": provider.url, "jwks_uri": f"{provider.url}/keys",
                    "token_endpoint": f"{provider.url}/token",
                    "authorization_endpoint": f"{provider.url}/auth",
                    "device_authorization_endpoint": f"{provider.url}/device/code",
                    "code_challenge_methods_supported": ["S256"],
                    "grant_types_supported": ["password", "refresh_token", TOKEN_EXCHANGE, "authorization_code",
                                              DEVICE_CODE],
                })
            elif self.path == "/keys":
                if provider.jwks_delay:
                    time.sleep(provider.jwks_delay)  # a slow provider, to show the controller does not block
                self._reply(200, provider.jwks())
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            provider.requests[self.path] += 1
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/token":
                self._reply(*provider.grant(form))
            elif self.path == "/device/code":
                self._reply(*provider.device_authorization(form))
            else:
                self._reply(404, {"error": "not found"})

    return Handler
