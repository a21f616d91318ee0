"""A tiny OpenID Connect identity provider for tests: HTTPS on loopback, port 0, in a thread.

It serves discovery, a JWKS of generated RSA keys and a token endpoint with the password,
refresh-token and token-exchange (RFC 8693, Dex's `connector_id`) grants for fixed users. It is the
external system at the controller's and `jmp login`'s boundary, so tests run a real one. It counts
requests per path, can delay its JWKS answers and mints arbitrary tokens for the failure cases.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from jumpstarter.direct.tls import generate_self_signed

CLIENT_ID = "jumpstarter-cli"
USERS = {"alice": "wonderland", "bob": "builder"}
#: `subject_token` the token-exchange grant accepts, per connector, and the user it stands for.
UPSTREAM_TOKENS = {("ldap", "ldap-token-of-alice"): "alice"}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


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
        else:
            return 400, {"error": "unsupported_grant_type"}
        body: dict[str, Any] = {
            "access_token": self.mint(user), "id_token": self.mint(user), "token_type": "Bearer",
            "expires_in": 3600,
        }
        if grant_type == TOKEN_EXCHANGE:
            body["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        if "offline_access" in form.get("scope", "").split() or grant_type == "refresh_token":
            refresh = uuid.uuid4().hex
            self.refresh_tokens[refresh] = user
            body["refresh_token"] = refresh
        return 200, body


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
            if self.path == "/.well-known/openid-configuration":
                self._reply(200, {
                    "issuer": provider.url, "jwks_uri": f"{provider.url}/keys",
                    "token_endpoint": f"{provider.url}/token",
                    "authorization_endpoint": f"{provider.url}/auth",
                    "grant_types_supported": ["password", "refresh_token", TOKEN_EXCHANGE],
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
            if self.path != "/token":
                self._reply(404, {"error": "not found"})
                return
            self._reply(*provider.grant(form))

    return Handler
