"""The SQLite store (round trips, restart) and tokens (issue, verify, rotate, revoke, key rotation)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jumpstarter.controller.auth import TokenAuthority
from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase, Policy
from jumpstarter.controller.store.sqlite import SqliteStore
from jumpstarter.errors import UnauthenticatedError


def test_store_round_trips_and_survives_reopening(tmp_path: Path) -> None:
    store = SqliteStore.in_directory(tmp_path)
    alice = Identity(Kind.CLIENT, "default", "alice", labels={"team": "qa"}, created=1.5)
    board = Identity(Kind.EXPORTER, "default", "board", labels={"b": "1"}, reported_labels={"r": "2"})
    lease = Lease("default", "l1", "alice", "b=1", 60.0, created=2.0, seq=1, tags={"ci": "yes"},
                  phase=LeasePhase.READY, exporter="board", effective_begin=3.0, effective_end=63.0)
    policy = Policy("default", "p", "b=1", clients=("alice",), client_selector="team=qa", maximum_duration=120.0)
    for identity in (alice, board):
        store.put_identity(identity)
    store.put_lease(lease)
    store.put_policy(policy)
    store.close()

    store = SqliteStore.in_directory(tmp_path)
    assert store.get_identity(Kind.CLIENT, "default", "alice") == alice
    assert store.list_identities(Kind.EXPORTER) == [board]
    assert store.get_lease("default", "l1") == lease
    assert store.list_leases(active_only=True) == [lease]
    assert store.list_policies() == [policy]
    lease.phase = LeasePhase.ENDED
    store.put_lease(lease)
    assert store.list_leases(active_only=True) == []
    assert store.delete_identity(Kind.CLIENT, "default", "alice")
    assert not store.delete_identity(Kind.CLIENT, "default", "alice")
    assert store.delete_policy("default", "p")
    store.close()


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore.in_directory(tmp_path)


def client(store: SqliteStore, name: str = "alice") -> Identity:
    identity = Identity(Kind.CLIENT, "default", name, created=time.time())
    store.put_identity(identity)
    return identity


def test_issue_and_verify(store: SqliteStore) -> None:
    authority = TokenAuthority(store)
    token, expiry = authority.issue(client(store))
    assert expiry > time.time() + 300 * 86400
    principal = authority.verify(token)
    assert (principal.kind, principal.namespace, principal.name) == (Kind.CLIENT, "default", "alice")


def test_keys_persist_across_restart(store: SqliteStore, tmp_path: Path) -> None:
    token, _ = TokenAuthority(store).issue(client(store))
    store.close()
    reopened = SqliteStore.in_directory(tmp_path)
    assert TokenAuthority(reopened).verify(token).name == "alice"
    assert len(reopened.signing_keys()) == 1


def test_rotation_and_deletion_lock_out_at_once(store: SqliteStore) -> None:
    authority = TokenAuthority(store)
    alice = client(store)
    old, _ = authority.issue(alice)
    alice.token_generation += 1
    store.put_identity(alice)
    with pytest.raises(UnauthenticatedError, match="rotated"):
        authority.verify(old)
    new, _ = authority.issue(alice)
    assert authority.verify(new).name == "alice"
    store.delete_identity(Kind.CLIENT, "default", "alice")
    with pytest.raises(UnauthenticatedError, match="no longer exists"):
        authority.verify(new)


def test_key_rotation_keeps_old_tokens_until_retired(store: SqliteStore) -> None:
    authority = TokenAuthority(store)
    alice = client(store)
    first_kid = store.signing_keys()[0].kid
    old, _ = authority.issue(alice)
    authority.rotate_key()
    new, _ = authority.issue(alice)
    import jwt

    assert jwt.get_unverified_header(new)["kid"] != first_kid
    assert authority.verify(old).name == authority.verify(new).name == "alice"
    authority.retire_key(first_kid)
    with pytest.raises(UnauthenticatedError, match="unknown or retired key"):
        authority.verify(old)
    assert authority.verify(new).name == "alice"


@pytest.mark.parametrize("mangle", ["garbage", "wrong-audience", "expired", "foreign-key", "tampered"])
def test_bad_tokens(store: SqliteStore, tmp_path: Path, mangle: str) -> None:
    authority = TokenAuthority(store)
    alice = client(store)
    if mangle == "garbage":
        token = "not.a.jwt"
    elif mangle == "wrong-audience":
        token, _ = TokenAuthority(store, audience="someone-else").issue(alice)
    elif mangle == "expired":
        token, _ = authority.issue(alice, lifetime=-120)
    elif mangle == "foreign-key":
        token, _ = TokenAuthority(SqliteStore(tmp_path / "other" / "db")).issue(alice)
    else:
        token, _ = authority.issue(alice)
        header, payload, signature = token.split(".")
        token = f"{header}.{payload[:-4]}AAAA.{signature}"
    with pytest.raises(UnauthenticatedError, match="unauthenticated"):
        authority.verify(token)


def test_one_store_per_data_directory(store: SqliteStore, tmp_path: Path) -> None:
    import os

    from jumpstarter.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=f"in use by another controller \\(pid {os.getpid()}\\)"):
        SqliteStore.in_directory(tmp_path)
    store.close()
    SqliteStore.in_directory(tmp_path).close()  # free again once closed
