"""The client side of OpenID Connect: discovery, token grants (password, RFC 8693 token exchange,
refresh) against an issuer's token endpoint, and reading a token's claims (unverified: only the
controller decides whether a token is good)."""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from jumpstarter.errors import ConfigurationError, ConnectionLostError, UnauthenticatedError

DEFAULT_CLIENT_ID = "jumpstarter-cli"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TIMEOUT = 15.0


@dataclass(slots=True, frozen=True)
class Tokens:
    """What a token endpoint granted."""

    access_token: str
    refresh_token: str | None = None


class OidcClient:
    """Talks to one issuer as OAuth2 client `client_id` (blocking HTTP; the CLI's only job here)."""

    def __init__(self, issuer: str, client_id: str = DEFAULT_CLIENT_ID, insecure: bool = False) -> None:
        if urllib.parse.urlsplit(issuer).scheme not in ("https", "http"):
            raise ConfigurationError(f"issuer {issuer!r} is not an http(s) URL")
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.context = ssl.create_default_context()
        if insecure:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self._discovery: dict[str, Any] | None = None

    def _open(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionLostError(f"cannot reach {request.full_url}: {reason}") from None
        except ValueError:
            raise ConfigurationError(f"{request.full_url} did not answer JSON") from None

    def discovery(self) -> dict[str, Any]:
        """The issuer's `/.well-known/openid-configuration`."""
        if self._discovery is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            status, document = self._open(urllib.request.Request(url, headers={"Accept": "application/json"}))
            if status != 200 or not isinstance(document, dict):
                raise ConfigurationError(f"{url} is not an OpenID Connect discovery document (HTTP {status})")
            self._discovery = document
        return self._discovery

    def _grant(self, form: dict[str, str]) -> Tokens:
        endpoint = self.discovery().get("token_endpoint")
        if not isinstance(endpoint, str):
            raise ConfigurationError(f"issuer {self.issuer} has no token_endpoint")
        data = urllib.parse.urlencode({**form, "client_id": self.client_id}).encode()
        request = urllib.request.Request(endpoint, data=data, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
        })
        status, body = self._open(request)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            error = body.get("error", f"HTTP {status}") if isinstance(body, dict) else f"HTTP {status}"
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            detail = f"{error}: {description}" if description else str(error)
            grant = form["grant_type"].rsplit(":", 1)[-1]
            raise UnauthenticatedError(f"unauthenticated: {self.issuer} refused the {grant} grant ({detail})")
        refresh = body.get("refresh_token")
        return Tokens(body["access_token"], refresh if isinstance(refresh, str) else None)

    def password(self, username: str, password: str, scopes: list[str]) -> Tokens:
        """OAuth2 resource-owner password grant."""
        return self._grant({"grant_type": "password", "username": username, "password": password,
                            "scope": " ".join(scopes)})

    def exchange(self, subject_token: str, connector_id: str, scopes: list[str]) -> Tokens:
        """RFC 8693 token exchange of a token from an upstream identity provider (Dex's `connector_id`)."""
        return self._grant({
            "grant_type": TOKEN_EXCHANGE, "subject_token": subject_token, "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE, "connector_id": connector_id, "scope": " ".join(scopes),
        })

    def refresh(self, refresh_token: str) -> Tokens:
        """A new access token for a refresh token."""
        return self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})


def scopes(offline_access: bool) -> list[str]:
    """The scopes `jmp login` asks for."""
    return ["openid", "profile", "email"] + (["offline_access"] if offline_access else [])


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, NOT verified (for display and for finding its issuer)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ConfigurationError("the token is not a JWT (expected three dot-separated parts)")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        raise ConfigurationError("the token is not a JWT (its claims do not decode)") from None
    if not isinstance(claims, dict):
        raise ConfigurationError("the token is not a JWT (its claims are not an object)")
    return claims


def span(seconds: float) -> str:
    """A coarse human duration: `3h12m`, `2 days`, `45s`."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days >= 2:
        return f"{days} days"
    if days or hours:
        return f"{days * 24 + hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def describe_expiry(exp: float | None, now: float) -> str:
    """`expires in 3h12m`, `EXPIRED 2 days ago`, or `never expires`."""
    if exp is None:
        return "never expires"
    if exp <= now:
        return f"EXPIRED {span(now - exp)} ago"
    return f"expires in {span(exp - now)}"
