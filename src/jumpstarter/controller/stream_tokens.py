"""Stream tokens: what `Dial` hands to a client and (through `Listen`) to the exporter, and what the
router pairs the two on.

A stream token is an ES256 JWT signed with the controller's current key, for audience
`https://jumpstarter.dev/router` (so it is never accepted as an identity token, and an identity
token is never accepted by a router). `sub` is a fresh stream id: one token pairs exactly one
client connection with one exporter connection, and the router refuses it once used. `lease`
names the lease (`namespace/name`); the router refuses it when that lease is no longer active.
It expires after `PAIRING_WINDOW` seconds: long enough to pair, useless afterwards.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from jumpstarter.errors import UnauthenticatedError

ISSUER = "https://jumpstarter.dev/stream"
AUDIENCE = "https://jumpstarter.dev/router"
ALGORITHM = "ES256"
#: Seconds a stream token can be used to pair (upstream: 30 minutes).
PAIRING_WINDOW = 60.0


class Signer(Protocol):
    """Signs claims with the controller's current key (`TokenAuthority`)."""

    def sign(self, claims: dict[str, object]) -> str:
        """A signed JWT."""
        ...


@dataclass(slots=True, frozen=True)
class StreamGrant:
    """What a verified stream token allows: pairing on stream `stream_id` for `lease` until `expiry`."""

    stream_id: str
    lease: str  # namespace/name
    expiry: float


def mint(
    signer: Signer, namespace: str, lease: str, window: float = PAIRING_WINDOW, data_endpoint: str | None = None
) -> tuple[str, StreamGrant]:
    """A new stream token for one connection to the exporter of lease `namespace/lease`; with
    `data_endpoint`, its sides meet at that router data port instead of `RouterService.Stream`."""
    now = time.time()
    expiry = int(now + window) + 1
    grant = StreamGrant(stream_id=str(uuid.uuid4()), lease=f"{namespace}/{lease}", expiry=float(expiry))
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": grant.stream_id,
        "iat": int(now),
        "nbf": int(now) - 30,
        "exp": expiry,
        "lease": grant.lease,
    }
    if data_endpoint:
        claims["dp"] = data_endpoint  # streams.dataplane.CLAIM
    return signer.sign(claims), grant


class StreamTokenVerifier:
    """Checks stream tokens against the controller's public keys (kid -> PEM)."""

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self._keys: dict[str, object] = {}
        self.update(keys or {})

    def update(self, keys: dict[str, str]) -> None:
        """Replace the accepted keys."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        self._keys = {kid: load_pem_public_key(pem.encode()) for kid, pem in keys.items()}

    def verify(self, token: str) -> StreamGrant:
        """The grant of a valid token; `UnauthenticatedError` saying why otherwise."""
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"unauthenticated: malformed stream token ({exc})") from None
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnauthenticatedError("unauthenticated: stream token signed by an unknown key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,  # type: ignore[arg-type]
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("unauthenticated: stream token expired (dial again)") from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError("unauthenticated: not a stream token (wrong audience)") from None
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"unauthenticated: invalid stream token ({exc})") from None
        if not isinstance(claims.get("lease"), str):
            raise UnauthenticatedError("unauthenticated: stream token names no lease")
        return StreamGrant(stream_id=str(claims["sub"]), lease=claims["lease"], expiry=float(claims["exp"]))
