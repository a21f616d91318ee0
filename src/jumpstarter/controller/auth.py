"""Tokens: ES256 JWTs signed by the controller's own persisted keys.

A token names its identity (`sub` = `<kind>:<namespace>:<name>`) and carries the identity's
token generation (`gen`). Verification looks the identity up in the store on every call, so
deleting it, or rotating its token (generation + 1), locks the old token out at once. Keys carry a
`kid`; rotating keys adds a new signing key while older keys still verify the tokens they signed,
until retired.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from jumpstarter.controller.model import Identity, Kind
from jumpstarter.controller.store.base import SigningKey, Store
from jumpstarter.errors import AlreadyExistsError, ArgumentError, UnauthenticatedError

ISSUER = "https://jumpstarter.dev/controller"
AUDIENCE = "jumpstarter"
ALGORITHM = "ES256"
#: Lifetime of tokens the controller issues (upstream's internal issuer default).
TOKEN_LIFETIME = 365 * 24 * 3600.0


@dataclass(slots=True, frozen=True)
class Principal:
    """Who made a call."""

    kind: Kind
    namespace: str
    name: str


def subject(kind: Kind, namespace: str, name: str) -> str:
    """The `sub` claim of an identity."""
    return f"{kind.value}:{namespace}:{name}"


def check_username(kind: Kind, username: str, holder: Identity | None) -> None:
    """Refuse an OIDC username an identity of `kind` cannot take (`holder`: who has it already)."""
    if kind not in (Kind.CLIENT, Kind.EXPORTER):
        raise ArgumentError("only clients and exporters can have an OIDC username")
    if not username or username != username.strip():
        raise ArgumentError(f"invalid OIDC username {username!r}")
    if holder is not None:
        owner = f"{holder.kind.value.lower()} {holder.namespace}/{holder.name}"
        raise AlreadyExistsError(f"OIDC username {username!r} already belongs to {owner}")


def _parse_subject(sub: str) -> tuple[Kind, str, str]:
    kind, namespace, name = sub.split(":", 2)
    return Kind(kind), namespace, name


class ExternalIssuers(Protocol):
    """Verifies tokens of issuers other than the controller (OIDC: `jumpstarter.controller.oidc`)."""

    def verify(self, token: str) -> Principal:
        """The principal of the token; `UnauthenticatedError` saying why not."""
        ...


class TokenAuthority:
    """Issues and verifies identity tokens with keys kept in the store.

    Tokens whose `iss` is not the controller's go to `external` when there is one."""

    def __init__(
        self, store: Store, issuer: str = ISSUER, audience: str = AUDIENCE, external: ExternalIssuers | None = None
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.audience = audience
        self.external = external
        self._keys: dict[str, SigningKey] = {}
        self._public: dict[str, object] = {}
        self._reload()
        if self._current() is None:
            self.rotate_key()

    def _reload(self) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self._keys = {k.kid: k for k in self.store.signing_keys()}
        self._public = {
            kid: load_pem_private_key(k.private_pem, password=None).public_key()  # type: ignore[union-attr]
            for kid, k in self._keys.items()
            if k.retired is None
        }

    def _current(self) -> SigningKey | None:
        live = [k for k in self._keys.values() if k.retired is None]
        return max(live, key=lambda k: k.created, default=None)

    def rotate_key(self) -> str:
        """Make a new signing key the current one; returns its kid. Older keys still verify."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        newest = max((k.created for k in self._keys.values()), default=0.0)
        key = SigningKey(kid=uuid.uuid4().hex[:16], private_pem=pem, created=max(time.time(), newest + 1e-6))
        self.store.add_signing_key(key)
        self._reload()
        return key.kid

    def retire_key(self, kid: str) -> None:
        """Stop accepting tokens signed with `kid` (they must be re-issued)."""
        self.store.retire_signing_key(kid, time.time())
        self._reload()
        if self._current() is None:
            self.rotate_key()

    def issue(self, identity: Identity, lifetime: float = TOKEN_LIFETIME) -> tuple[str, float]:
        """A token for `identity` at its current generation; returns (token, expiry)."""
        import jwt

        key = self._current()
        assert key is not None
        now = time.time()
        expiry = now + lifetime
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject(identity.kind, identity.namespace, identity.name),
            "iat": int(now),
            "nbf": int(now) - 60,
            "exp": int(expiry),
            "jti": uuid.uuid4().hex,
            "gen": identity.token_generation,
        }
        token = jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, expiry

    def sign(self, claims: dict[str, object]) -> str:
        """`claims` as a JWT signed with the current key (stream tokens for the router)."""
        import jwt

        key = self._current()
        assert key is not None
        return jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verification_keys(self) -> dict[str, str]:
        """kid -> PEM public key of every key still accepted (routers verify stream tokens with them)."""
        from cryptography.hazmat.primitives import serialization

        return {
            kid: public.public_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
            for kid, public in self._public.items()
        }

    def verify(self, token: str) -> Principal:
        """The principal a token stands for; raises `UnauthenticatedError` with the reason."""
        import jwt

        if self.external is not None and self._foreign(token):
            return self.external.verify(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"unauthenticated: malformed token ({exc})") from None
        kid = header.get("kid")
        public = self._public.get(kid) if isinstance(kid, str) else None
        if public is None:
            raise UnauthenticatedError("unauthenticated: token signed by an unknown or retired key")
        try:
            claims = jwt.decode(
                token, public, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,  # type: ignore[arg-type]
                options={"require": ["exp", "sub", "gen"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("unauthenticated: token expired") from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError(f"unauthenticated: token is not for audience {self.audience!r}") from None
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"unauthenticated: invalid token ({exc})") from None
        try:
            kind, namespace, name = _parse_subject(str(claims["sub"]))
        except ValueError:
            raise UnauthenticatedError("unauthenticated: token subject is not a Jumpstarter identity") from None
        identity = self.store.get_identity(kind, namespace, name)
        if identity is None:
            raise UnauthenticatedError(f"unauthenticated: {kind.value.lower()} {namespace}/{name} no longer exists")
        if claims["gen"] != identity.token_generation:
            raise UnauthenticatedError(
                f"unauthenticated: token of {kind.value.lower()} {namespace}/{name} was rotated; use the new one"
            )
        return Principal(kind, namespace, name)


    def _foreign(self, token: str) -> bool:
        """Whether the (unverified) `iss` of a token names another issuer than this one."""
        import jwt

        try:
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return False  # malformed: the checks below say so
        return iss != self.issuer


def bearer(metadata: object) -> str:
    """The token of an `authorization: Bearer <token>` metadata entry."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise UnauthenticatedError("unauthenticated: authorization metadata is not 'Bearer <token>'")
    raise UnauthenticatedError("unauthenticated: no token (authorization metadata missing)")
