"""OIDC issuers on the controller: the auth config file, key caching against a real (loopback)
identity provider, token checks, usernames in the store and the migration of older databases."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.coordinator import Coordinator
from jumpstarter.controller.model import Identity, Kind
from jumpstarter.controller.oidc import AuthConfig, OidcIssuers, load_auth_config
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.errors import AlreadyExistsError, ArgumentError, ConfigurationError, UnauthenticatedError
from tests.oidc_provider import OidcProvider
from tests.unit.controller.clock import Clock


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path) as provider:
        yield provider


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore.in_directory(tmp_path / "data")
    yield store
    store.close()


def config(idp: OidcProvider, *audiences: str) -> AuthConfig:
    return AuthConfig.model_validate({"authentication": {"jwt": [{
        "issuer": {"url": idp.url, "audiences": list(audiences or ["jumpstarter-cli"]),
                   "certificateAuthority": idp.ca_pem},
        "claimMappings": {"username": {"claim": "preferred_username", "prefix": "dex:"}},
    }]}})


def issuers(idp: OidcProvider, store: SqliteStore, clock: Clock | None = None, *audiences: str) -> OidcIssuers:
    return OidcIssuers.from_config(config(idp, *audiences), store, clock=clock or Clock())


def add_client(store: SqliteStore, name: str = "alice", username: str | None = "dex:alice") -> Identity:
    identity = Identity(Kind.CLIENT, "default", name, created=time.time(), username=username)
    store.put_identity(identity)
    return identity


def verify(oidc: OidcIssuers, token: str) -> tuple[Kind, str, str]:
    asyncio.run(oidc.prepare(token))
    principal = oidc.verify(token)
    return principal.kind, principal.namespace, principal.name


# ---- the config file ------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "line", "message"), [
    ("authentication:\n  jwt:\n  - issuer:\n      url: http://idp.example\n      audiences: [a]\n", 4,
     "authentication.jwt.0.issuer.url: must be an https:// URL"),
    ("authentication:\n  jwt:\n  - issuer:\n      url: https://idp.example\n", 3,
     "authentication.jwt.0.issuer.audiences: required field is missing"),
    ("authentication:\n  jwt:\n  - issuer:\n      url: https://idp.example\n      audiences: []\n", 5,
     "authentication.jwt.0.issuer.audiences: List should have at least 1 item"),
    ("authentication:\n  jwt:\n  - issuer:\n      url: https://idp.example\n      audiences: [a]\n"
     "      certificateAuthority: not a pem\n", 6, "certificateAuthority: not a PEM certificate bundle"),
    ("authentication:\n  jwt:\n  - issuer: {url: 'https://a.example', audiences: [a]}\n"
     "    claimMapping: {}\n", 4, "unknown field 'claimMapping' (allowed: issuer, claimMappings)"),
    ("authentication:\n  jwt:\n  - issuer: {url: 'https://a.example', audiences: [a]}\n"
     "  - issuer: {url: 'https://a.example', audiences: [b]}\n", 2, "issuer listed more than once: https://a.example"),
])
def test_bad_auth_config_is_located(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = tmp_path / "auth.yaml"
    path.write_text(body)
    with pytest.raises(ConfigurationError) as caught:
        load_auth_config(path)
    assert str(caught.value).startswith(f"{path}:{line}: "), caught.value
    assert message in str(caught.value)


def test_auth_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "auth.yaml"
    path.write_text("authentication:\n  jwt:\n  - issuer: {url: 'https://a.example', audiences: [a]}\n")
    mapping = load_auth_config(path).authentication.jwt[0].claim_mappings.username
    assert (mapping.claim, mapping.prefix) == ("sub", "")


# ---- verification against a real provider ---------------------------------------------------

def test_first_token_fetches_keys_once_and_later_ones_use_the_cache(idp: OidcProvider, store: SqliteStore) -> None:
    add_client(store)
    oidc = issuers(idp, store)
    assert verify(oidc, idp.mint("alice")) == (Kind.CLIENT, "default", "alice")
    for _ in range(3):
        assert verify(oidc, idp.mint("alice"))[2] == "alice"
    assert idp.requests["/.well-known/openid-configuration"] == 1
    assert idp.requests["/keys"] == 1


@pytest.mark.parametrize(("claims", "message"), [
    ({"aud": "someone-else"}, "unauthenticated: token audience 'someone-else' not accepted"),
    ({"lifetime": -120}, "unauthenticated: token expired"),
    ({"user": "bob"}, "unauthenticated: no client for user dex:bob"),
    ({"nbf": int(time.time()) + 600}, "unauthenticated: token not valid yet"),
    ({"preferred_username": ""}, "unauthenticated: token has no 'preferred_username' claim"),
])
def test_bad_tokens_are_refused_with_the_reason(idp: OidcProvider, store: SqliteStore, claims: dict[str, object],
                                                 message: str) -> None:
    add_client(store)
    oidc = issuers(idp, store)
    with pytest.raises(UnauthenticatedError, match=message):
        verify(oidc, idp.mint(**claims))  # type: ignore[arg-type]


def test_a_token_that_expired_within_the_leeway_still_passes(idp: OidcProvider, store: SqliteStore) -> None:
    add_client(store)
    assert verify(issuers(idp, store), idp.mint(lifetime=-5))[2] == "alice"


def test_forged_and_foreign_tokens_are_refused(idp: OidcProvider, store: SqliteStore) -> None:
    add_client(store)
    oidc = issuers(idp, store)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnauthenticatedError, match=r"invalid token .*Signature verification failed"):
        verify(oidc, idp.mint(key=stranger))
    claims = jwt.decode(idp.mint(), options={"verify_signature": False})
    symmetric = jwt.encode(claims, "secret-of-nobody-which-is-long-enough", algorithm="HS256",
                           headers={"kid": idp.kid})
    with pytest.raises(UnauthenticatedError, match="algorithm 'HS256' not accepted"):
        verify(oidc, symmetric)
    with pytest.raises(UnauthenticatedError, match=r"token issuer 'https://elsewhere\.example' is not accepted"):
        verify(oidc, idp.mint(iss="https://elsewhere.example"))
    with pytest.raises(UnauthenticatedError, match="malformed token"):
        verify(oidc, "not-a-jwt")


def test_unknown_kid_refetches_at_most_once_per_interval(idp: OidcProvider, store: SqliteStore) -> None:
    add_client(store)
    clock = Clock()
    oidc = issuers(idp, store, clock)
    assert verify(oidc, idp.mint())[2] == "alice"
    new_kid = idp.rotate_key()
    with pytest.raises(UnauthenticatedError, match=f"unknown key '{new_kid}'"):
        verify(oidc, idp.mint())  # within the interval: no fetch
    with pytest.raises(UnauthenticatedError, match="unknown key 'made-up'"):
        verify(oidc, _with_kid(idp, "made-up"))
    assert idp.requests["/keys"] == 1
    clock.now += 11
    assert verify(oidc, idp.mint())[2] == "alice"  # the rotated key is fetched now
    assert idp.requests["/keys"] == 2
    clock.now += 3600  # the TTL passed: fetched again even for a known kid
    assert verify(oidc, idp.mint())[2] == "alice"
    assert idp.requests["/keys"] == 3
    assert idp.requests["/.well-known/openid-configuration"] == 1


def _with_kid(idp: OidcProvider, kid: str) -> str:
    claims = jwt.decode(idp.mint(), options={"verify_signature": False})
    return jwt.encode(claims, idp.keys[idp.kid], algorithm="RS256", headers={"kid": kid})


def test_an_unreachable_provider_is_reported(idp: OidcProvider, store: SqliteStore) -> None:
    add_client(store)
    clock = Clock()
    oidc = issuers(idp, store, clock)
    token = idp.mint()
    idp.__exit__()
    with pytest.raises(UnauthenticatedError, match=f"keys of issuer {idp.url} are unavailable .*Error"):
        verify(oidc, token)


def test_fetching_keys_does_not_block_the_event_loop(tmp_path: Path, store: SqliteStore) -> None:
    add_client(store)
    with OidcProvider(tmp_path, jwks_delay=0.5) as slow:
        oidc = issuers(slow, store)
        token = slow.mint()

        async def scenario() -> int:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            await oidc.prepare(token)
            task.cancel()
            return ticks

        assert asyncio.run(scenario()) >= 20
        assert oidc.verify(token).name == "alice"


def test_internal_tokens_never_touch_the_network(idp: OidcProvider, store: SqliteStore) -> None:
    alice = add_client(store)
    authority = TokenAuthority(store, external=issuers(idp, store))
    token, _ = authority.issue(alice)
    for _ in range(3):
        assert authority.verify(token).name == "alice"
    assert sum(idp.requests.values()) == 0


def test_authority_hands_oidc_tokens_to_the_issuers(idp: OidcProvider, store: SqliteStore) -> None:
    add_client(store)
    oidc = issuers(idp, store)
    authority = TokenAuthority(store, external=oidc)
    token = idp.mint()
    with pytest.raises(UnauthenticatedError, match="not fetched yet"):
        authority.verify(token)
    asyncio.run(oidc.prepare(token))
    assert authority.verify(token).name == "alice"
    plain = TokenAuthority(store)  # without OIDC issuers: foreign tokens are unknown keys
    with pytest.raises(UnauthenticatedError, match="unknown or retired key"):
        plain.verify(token)


# ---- usernames in the store -----------------------------------------------------------------

def test_usernames_are_unique_and_only_for_clients_and_exporters(store: SqliteStore) -> None:
    coordinator = Coordinator(store)
    coordinator.create_identity(Kind.CLIENT, "default", "alice", {}, "dex:alice")
    assert store.identity_by_username("dex:alice") == store.get_identity(Kind.CLIENT, "default", "alice")
    with pytest.raises(AlreadyExistsError, match="'dex:alice' already belongs to client default/alice"):
        coordinator.create_identity(Kind.EXPORTER, "lab", "board", {}, "dex:alice")
    with pytest.raises(ArgumentError, match="only clients and exporters"):
        coordinator.create_identity(Kind.ROUTER, "default", "r1", {}, "dex:router")
    with pytest.raises(ArgumentError, match="invalid OIDC username"):
        coordinator.create_identity(Kind.CLIENT, "default", "carol", {}, " dex:carol")
    assert store.identity_by_username("dex:nobody") is None


def test_a_database_from_before_usernames_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE identities (
            kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
            labels TEXT NOT NULL, reported_labels TEXT NOT NULL, token_generation INTEGER NOT NULL,
            created REAL NOT NULL, enabled INTEGER NOT NULL,
            PRIMARY KEY (kind, namespace, name)
        );
        INSERT INTO identities VALUES ('Client', 'default', 'old', '{"a": "b"}', '{}', 3, 1.0, 1);
        PRAGMA user_version=1;
    """)
    db.close()
    store = SqliteStore(path)
    old = store.get_identity(Kind.CLIENT, "default", "old")
    assert old == Identity(Kind.CLIENT, "default", "old", labels={"a": "b"}, token_generation=3, created=1.0)
    old.username = "dex:old"
    store.put_identity(old)
    store.close()
    store = SqliteStore(path)
    assert store.identity_by_username("dex:old") == old
    store.close()
