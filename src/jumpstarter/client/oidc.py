"""The client side of OpenID Connect: discovery, token grants (password, RFC 8693 token exchange,
refresh, authorization code with PKCE, RFC 8628 device code) against an issuer's token endpoint,
and reading a token's claims (unverified: only the controller decides whether a token is good)."""

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
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_EXPIRED = "unauthenticated: the device code expired before the login was approved; log in again"
TIMEOUT = 15.0


@dataclass(slots=True, frozen=True)
class Tokens:
    """What a token endpoint granted."""

    access_token: str
    refresh_token: str | None = None


@dataclass(slots=True, frozen=True)
class DeviceAuthorization:
    """An issuer's answer to the start of a device login (RFC 8628, section 3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: float
    expires_in: float


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

    def endpoint(self, key: str) -> str:
        """An endpoint the discovery document names (`token_endpoint`, ...)."""
        url = self.discovery().get(key)
        if not isinstance(url, str):
            raise ConfigurationError(f"issuer {self.issuer} has no {key}")
        return url

    def _post(self, url: str, form: dict[str, str]) -> tuple[int, Any]:
        data = urllib.parse.urlencode({**form, "client_id": self.client_id}).encode()
        return self._open(urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
        }))

    def _grant(self, form: dict[str, str]) -> Tokens:
        return self._tokens(form["grant_type"], *self._post(self.endpoint("token_endpoint"), form))

    def _tokens(self, grant_type: str, status: int, body: Any) -> Tokens:
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            error = body.get("error", f"HTTP {status}") if isinstance(body, dict) else f"HTTP {status}"
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            detail = f"{error}: {description}" if description else str(error)
            grant = grant_type.rsplit(":", 1)[-1]
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

    def authorization_url(self, redirect_uri: str, state: str, code_challenge: str, scopes: list[str]) -> str:
        """Where the browser logs the user in (authorization code flow with PKCE S256)."""
        endpoint = self.endpoint("authorization_endpoint")
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(scopes), "state": state, "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        })
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def authorization_code(self, code: str, redirect_uri: str, code_verifier: str) -> Tokens:
        """Tokens for the code the browser's redirect brought back (with the PKCE verifier)."""
        return self._grant({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                            "code_verifier": code_verifier})

    def device_authorization(self, scopes: list[str]) -> DeviceAuthorization:
        """Start an RFC 8628 device login: the code the user enters and the one the CLI polls with."""
        url = self.endpoint("device_authorization_endpoint")
        status, body = self._post(url, {"scope": " ".join(scopes)})
        if status != 200 or not isinstance(body, dict):
            error = body.get("error", f"HTTP {status}") if isinstance(body, dict) else f"HTTP {status}"
            raise UnauthenticatedError(f"unauthenticated: {self.issuer} refused the device login ({error})")
        complete = body.get("verification_uri_complete")
        try:
            return DeviceAuthorization(
                device_code=str(body["device_code"]), user_code=str(body["user_code"]),
                verification_uri=str(body.get("verification_uri") or body["verification_url"]),
                verification_uri_complete=complete if isinstance(complete, str) and complete else None,
                interval=float(body.get("interval", 5)), expires_in=float(body.get("expires_in", 600)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{url} answered an incomplete device authorization ({exc})") from None

    def device(self, device_code: str) -> Tokens | str:
        """One poll of a device login: its tokens once the user approved, else `authorization_pending`
        or `slow_down`; a denied or expired login raises."""
        form = {"grant_type": DEVICE_CODE, "device_code": device_code}
        status, body = self._post(self.endpoint("token_endpoint"), form)
        error = body.get("error") if isinstance(body, dict) and status != 200 else None
        if error in ("authorization_pending", "slow_down"):
            return str(error)
        if error == "access_denied":
            raise UnauthenticatedError(f"unauthenticated: the login was denied at {self.issuer} (access_denied)")
        if error == "expired_token":
            raise UnauthenticatedError(DEVICE_CODE_EXPIRED)
        return self._tokens(DEVICE_CODE, status, body)


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
