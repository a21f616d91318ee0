"""Tokens from OpenID Connect issuers, accepted alongside the controller's own.

The controller's auth config file (`jmp controller run --auth-config FILE`) lists JWT authenticators
in upstream's shape (`authentication.jwt[]`). For each issuer the controller discovers
`<issuer>/.well-known/openid-configuration`, fetches the key set at its `jwks_uri` and keeps it:
for `ttl` seconds, refetched early when a token names an unknown `kid` (at most once per
`unknown_kid_interval`). Fetching is blocking I/O: `OidcIssuers.prepare` runs it in a worker thread
before a call is verified, and `verify` itself only reads the cache.

A verified token's username claim, with the issuer's prefix (`dex:alice`), names the identity
whose `username` it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from jumpstarter.config.common import ConfigModel
from jumpstarter.controller.auth import Principal
from jumpstarter.errors import UnauthenticatedError

if TYPE_CHECKING:
    from jumpstarter.controller.store.base import Store

log = logging.getLogger("jumpstarter.controller.oidc")

#: How long a fetched key set is used before it is fetched again.
JWKS_TTL = 3600.0
#: Least time between two fetches caused by tokens naming a key the issuer did not publish.
UNKNOWN_KID_INTERVAL = 10.0
#: Least time between attempts after a failed fetch.
RETRY_AFTER_FAILURE = 1.0
#: Clock skew tolerated on `exp`, `nbf` and `iat`.
LEEWAY = 30.0
FETCH_TIMEOUT = 5.0
#: Signature algorithms by JWK key type; symmetric ones and `none` are never accepted.
ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}


# ---- the auth config file -------------------------------------------------------------------


class UsernameClaim(ConfigModel):
    """`claimMappings.username`: which claim names the user, and the prefix put before it."""

    claim: str = Field(default="sub", min_length=1)
    prefix: str = ""


class ClaimMappings(ConfigModel):
    """`claimMappings`."""

    username: UsernameClaim = Field(default_factory=UsernameClaim)


class IssuerConfig(ConfigModel):
    """`issuer`: where tokens come from and which audiences they must carry."""

    url: str
    audiences: list[str] = Field(min_length=1)
    certificate_authority: str | None = Field(default=None, alias="certificateAuthority")

    @field_validator("url")
    @classmethod
    def _https(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"must be an https:// URL without query or fragment (the tokens' `iss`), got {url!r}")
        return url

    @field_validator("certificate_authority")
    @classmethod
    def _pem(cls, pem: str | None) -> str | None:
        if pem is not None:
            try:
                ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"not a PEM certificate bundle ({exc})") from None
        return pem


class JWTAuthenticator(ConfigModel):
    """One entry of `authentication.jwt`."""

    issuer: IssuerConfig
    claim_mappings: ClaimMappings = Field(default_factory=ClaimMappings, alias="claimMappings")


class Authentication(ConfigModel):
    """`authentication`: OIDC issuers accepted besides the controller's own."""

    jwt: list[JWTAuthenticator] = Field(default_factory=list)

    @field_validator("jwt")
    @classmethod
    def _distinct(cls, jwt: list[JWTAuthenticator]) -> list[JWTAuthenticator]:
        urls = [entry.issuer.url for entry in jwt]
        twice = sorted({url for url in urls if urls.count(url) > 1})
        if twice:
            raise ValueError(f"issuer listed more than once: {', '.join(twice)}")
        return jwt


class AuthConfig(ConfigModel):
    """The controller's auth config file."""

    authentication: Authentication


def load_auth_config(path: str | Path) -> AuthConfig:
    """Read an auth config file (`ConfigurationError` naming file, line and field)."""
    from jumpstarter.config.loading import load_model

    return load_model(AuthConfig, path)


# ---- one issuer -----------------------------------------------------------------------------


def get_json(url: str, context: ssl.SSLContext, timeout: float = FETCH_TIMEOUT) -> dict[str, Any]:
    """GET `url` and parse a JSON object (blocking)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        document = json.loads(response.read())
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return document


def signing_keys(jwks: dict[str, Any]) -> dict[str, tuple[Any, str | None]]:
    """kid ("" when absent) -> (jwt.PyJWK, its declared `alg`) of the usable signing keys of a JWKS."""
    import jwt

    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise ValueError("the JWKS has no `keys` list")
    keys: dict[str, tuple[Any, str | None]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") not in ALGORITHMS:
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type or curve we cannot use; others may still verify
        keys[key.key_id or ""] = (key, entry.get("alg"))
    if not keys:
        raise ValueError("the JWKS holds no usable signing key")
    return keys


class OidcIssuer:
    """Keys and checks of one OIDC issuer. `refresh` does I/O; everything else reads the cache."""

    def __init__(
        self, config: JWTAuthenticator, *, ttl: float = JWKS_TTL, unknown_kid_interval: float = UNKNOWN_KID_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.url = config.issuer.url
        self.ttl = ttl
        self.unknown_kid_interval = unknown_kid_interval
        self.clock = clock
        self._context = ssl.create_default_context(cadata=config.issuer.certificate_authority or None)
        self._jwks_uri: str | None = None
        self._keys: dict[str, tuple[Any, str | None]] = {}  # kid ("" if none) -> (jwt.PyJWK, its `alg`)
        self._fetched: float | None = None
        self._next_attempt = 0.0
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def needs_fetch(self, kid: str | None) -> bool:
        """Whether a token signed with `kid` calls for fetching the key set now."""
        now = self.clock()
        if now < self._next_attempt:
            return False
        if self._fetched is None or now - self._fetched >= self.ttl:
            return True
        return (kid or "") not in self._keys

    def refresh(self, kid: str | None = None) -> None:
        """Fetch discovery (once) and the key set when `needs_fetch(kid)`; blocking, run it in a thread.
        A failure is logged and remembered; keys fetched before stay in use."""
        import jwt

        with self._lock:
            if not self.needs_fetch(kid):
                return  # another thread fetched meanwhile
            try:
                if self._jwks_uri is None:
                    self._jwks_uri = self._discover()
                keys = signing_keys(get_json(self._jwks_uri, self._context))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._next_attempt = self.clock() + RETRY_AFTER_FAILURE
                log.warning("cannot fetch the keys of OIDC issuer %s: %s", self.url, self.last_error)
                return
            now = self.clock()
            self._keys = keys
            self._fetched = now
            self._next_attempt = now + self.unknown_kid_interval
            self.last_error = None
            log.info("fetched %d key(s) of OIDC issuer %s", len(self._keys), self.url)

    def _discover(self) -> str:
        document = get_json(self.url.rstrip("/") + "/.well-known/openid-configuration", self._context)
        if document.get("issuer") != self.url:
            raise ValueError(f"discovery document names issuer {document.get('issuer')!r}, not {self.url!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise ValueError(f"discovery document has no https jwks_uri (got {jwks_uri!r})")
        return jwks_uri

    def username(self, token: str, header: dict[str, Any]) -> str:
        """The prefixed username of a token this issuer signed; `UnauthenticatedError` saying why not."""
        import jwt

        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        found = self._keys.get(kid or "")
        if found is None:
            if self._fetched is None:
                reason = self.last_error or "not fetched yet"
                raise UnauthenticatedError(f"unauthenticated: keys of issuer {self.url} are unavailable ({reason})")
            raise UnauthenticatedError(f"unauthenticated: token signed by unknown key {kid!r} of issuer {self.url}")
        key, explicit = found
        algorithm = header.get("alg")
        allowed = ALGORITHMS.get(key.key_type, ())
        if algorithm not in allowed or (explicit is not None and algorithm != explicit):
            raise UnauthenticatedError(f"unauthenticated: token algorithm {algorithm!r} not accepted for this key")
        audiences = self.config.issuer.audiences
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[algorithm], audience=audiences, issuer=self.url, leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("unauthenticated: token expired") from None
        except jwt.InvalidAudienceError:
            found = jwt.decode(token, options={"verify_signature": False}).get("aud")
            raise UnauthenticatedError(
                f"unauthenticated: token audience {found!r} not accepted (issuer {self.url} accepts "
                f"{', '.join(audiences)})"
            ) from None
        except jwt.ImmatureSignatureError:
            raise UnauthenticatedError("unauthenticated: token not valid yet (nbf/iat in the future)") from None
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"unauthenticated: invalid token ({exc})") from None
        mapping = self.config.claim_mappings.username
        value = claims.get(mapping.claim)
        if not isinstance(value, str) or not value:
            raise UnauthenticatedError(f"unauthenticated: token has no {mapping.claim!r} claim")
        if mapping.claim == "email" and claims.get("email_verified") is False:
            raise UnauthenticatedError("unauthenticated: token's email is not verified")
        return mapping.prefix + value


# ---- every configured issuer ----------------------------------------------------------------


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(header, claims) of a JWT without verifying it, or None when it is not one."""
    import jwt

    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None


class OidcIssuers:
    """The configured OIDC issuers: verify their tokens into principals (`TokenAuthority.external`)."""

    def __init__(self, issuers: list[OidcIssuer], store: Store) -> None:
        self.issuers = {issuer.url: issuer for issuer in issuers}
        self.store = store

    @classmethod
    def from_config(cls, config: AuthConfig, store: Store, **timing: Any) -> OidcIssuers:
        """The issuers of an auth config file."""
        return cls([OidcIssuer(entry, **timing) for entry in config.authentication.jwt], store)

    def _issuer(self, token: str) -> tuple[OidcIssuer | None, dict[str, Any], dict[str, Any]]:
        peeked = peek(token)
        if peeked is None:
            return None, {}, {}
        header, claims = peeked
        iss = claims.get("iss")
        return (self.issuers.get(iss) if isinstance(iss, str) else None), header, claims

    async def prepare(self, token: str) -> None:
        """Fetch, in a worker thread, the keys `token` needs when they are not cached (never raises)."""
        issuer, header, _ = self._issuer(token)
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        if issuer is not None and issuer.needs_fetch(kid):
            await asyncio.to_thread(issuer.refresh, kid)

    async def prefetch(self) -> None:
        """Fetch every issuer's keys (at start, so the first calls need not wait)."""
        await asyncio.gather(*(asyncio.to_thread(issuer.refresh) for issuer in self.issuers.values()))

    def verify(self, token: str) -> Principal:
        """The principal of an OIDC token; `UnauthenticatedError` saying why not."""
        issuer, header, claims = self._issuer(token)
        if issuer is None:
            if not claims and not header:
                raise UnauthenticatedError("unauthenticated: malformed token")
            raise UnauthenticatedError(f"unauthenticated: token issuer {claims.get('iss')!r} is not accepted")
        username = issuer.username(token, header)
        identity = self.store.identity_by_username(username)
        if identity is None:
            raise UnauthenticatedError(
                f"unauthenticated: no client for user {username} "
                f"(an administrator maps it with `jmp admin create client NAME --oidc-username {username}`)"
            )
        return Principal(identity.kind, identity.namespace, identity.name)
