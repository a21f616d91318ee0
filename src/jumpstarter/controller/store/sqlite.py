"""The embedded store: one SQLite file (WAL mode) in the controller's data directory."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from operator import attrgetter
from pathlib import Path
from typing import Any

from jumpstarter.controller.model import Identity, Kind, Lease, LeasePhase, Policy
from jumpstarter.controller.store.base import SigningKey

FILE_NAME = "controller.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    labels TEXT NOT NULL, reported_labels TEXT NOT NULL, token_generation INTEGER NOT NULL,
    created REAL NOT NULL, enabled INTEGER NOT NULL, username TEXT,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL, name TEXT NOT NULL, seq INTEGER NOT NULL, client TEXT NOT NULL,
    selector TEXT NOT NULL, duration REAL NOT NULL, created REAL NOT NULL,
    exporter_name TEXT, begin_time REAL, tags TEXT NOT NULL, phase TEXT NOT NULL, exporter TEXT,
    effective_begin REAL, effective_end REAL, reason TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX IF NOT EXISTS leases_by_phase ON leases (phase);
CREATE TABLE IF NOT EXISTS policies (
    namespace TEXT NOT NULL, name TEXT NOT NULL, exporter_selector TEXT NOT NULL, clients TEXT NOT NULL,
    client_selector TEXT, maximum_duration REAL, priority INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY, private_pem BLOB NOT NULL, created REAL NOT NULL, retired REAL
);
"""

_ACTIVE = (LeasePhase.PENDING.value, LeasePhase.READY.value)


class SqliteStore:
    """`Store` on SQLite. Writes commit before returning; WAL keeps readers off writers' backs."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = _lock_exclusively(self.path.with_name(self.path.name + ".lock"))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only a power cut can lose the last commit)
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer controller (schema {version})")
        self._db.executescript(_SCHEMA)
        policy_columns = {row["name"] for row in self._db.execute("PRAGMA table_info(policies)")}
        if "priority" not in policy_columns:  # written before policies had a priority
            self._db.execute("ALTER TABLE policies ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
        identity_columns = {row["name"] for row in self._db.execute("PRAGMA table_info(identities)")}
        if "username" not in identity_columns:  # written before identities had an OIDC username
            self._db.execute("ALTER TABLE identities ADD COLUMN username TEXT")
        self._db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS identities_by_username ON identities (username)"
            " WHERE username IS NOT NULL"
        )
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.path.chmod(0o600)
        #: every identity, read once: the scheduler and token checks read them on every call,
        #: and only this process writes the file (callers get copies, so the cache stays exact)
        self._identities: dict[tuple[str, str, str], Identity] | None = None
        self._sorted: dict[str, list[Identity]] = {}
        self._identities_version = 0
        #: the active (pending and ready) leases, read once, kept like the identities: every
        #: scheduling pass and status change reads them; ended ones are read from the file
        self._active: dict[tuple[str, str], Lease] | None = None

    @classmethod
    def in_directory(cls, data_dir: Path | str) -> SqliteStore:
        """The store file of a controller data directory."""
        return cls(Path(data_dir) / FILE_NAME)

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._db:  # one transaction per write
            return self._db.execute(sql, params).rowcount

    # ---- identities ---------------------------------------------------------------------------
    def put_identity(self, identity: Identity) -> None:
        """Create or replace an identity."""
        self._write(
            "INSERT OR REPLACE INTO identities (kind, namespace, name, labels, reported_labels, token_generation,"
            " created, enabled, username) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                identity.kind.value, identity.namespace, identity.name, json.dumps(identity.labels),
                json.dumps(identity.reported_labels), identity.token_generation, identity.created,
                int(identity.enabled), identity.username,
            ),
        )
        self._remember(identity, (identity.kind.value, identity.namespace, identity.name))

    def get_identity(self, kind: Kind, namespace: str, name: str) -> Identity | None:
        """One identity, or None."""
        found = self._cached().get((kind.value, namespace, name))
        return _detached(found) if found is not None else None

    def _cached(self) -> dict[tuple[str, str, str], Identity]:
        if self._identities is None:
            rows = self._db.execute("SELECT * FROM identities")
            self._identities = {(row["kind"], row["namespace"], row["name"]): _identity(row) for row in rows}
        return self._identities

    @property
    def identities_version(self) -> int:
        """Changes whenever an identity is written or deleted."""
        return self._identities_version

    def _remember(self, identity: Identity | None, key: tuple[str, str, str]) -> None:
        """Keep the cache equal to the table after a write (`identity` None: deleted)."""
        self._identities_version += 1
        if self._identities is None:
            return
        if identity is not None and identity.username is not None:
            self._identities, self._sorted = None, {}  # REPLACE may have dropped a row holding the username
            return
        if identity is None:
            self._identities.pop(key, None)
        else:
            self._identities[key] = _detached(identity)
        self._sorted.pop(key[0], None)

    def identity_by_username(self, username: str) -> Identity | None:
        """The identity an OIDC username maps to, or None (usernames are unique)."""
        row = self._db.execute("SELECT * FROM identities WHERE username=?", (username,)).fetchone()
        return _identity(row) if row is not None else None

    def delete_identity(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete an identity; False when there was none."""
        deleted = self._write(
            "DELETE FROM identities WHERE kind=? AND namespace=? AND name=?", (kind.value, namespace, name)
        ) > 0
        self._remember(None, (kind.value, namespace, name))
        return deleted

    def list_identities(self, kind: Kind, namespace: str | None = None) -> list[Identity]:
        """Identities of a kind, sorted by namespace and name."""
        ordered = self._sorted.get(kind.value)
        if ordered is None:
            ordered = sorted((i for i in self._cached().values() if i.kind is kind), key=lambda i: i.key)
            self._sorted[kind.value] = ordered
        return [_detached(i) for i in ordered if namespace is None or i.namespace == namespace]

    # ---- leases -------------------------------------------------------------------------------
    def put_lease(self, lease: Lease) -> None:
        """Create or replace a lease."""
        self._write(
            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                lease.namespace, lease.name, lease.seq, lease.client, lease.selector, lease.duration,
                lease.created, lease.exporter_name, lease.begin_time, json.dumps(lease.tags), lease.phase.value,
                lease.exporter, lease.effective_begin, lease.effective_end, lease.reason, lease.message,
            ),
        )
        if self._active is not None:
            if lease.active:
                self._active[lease.key] = _lease_copy(lease)
            else:
                self._active.pop(lease.key, None)

    def _active_leases(self) -> dict[tuple[str, str], Lease]:
        if self._active is None:
            rows = self._db.execute("SELECT * FROM leases WHERE phase IN (?, ?)", _ACTIVE)
            self._active = {(row["namespace"], row["name"]): _lease(row) for row in rows}
        return self._active

    def get_lease(self, namespace: str, name: str) -> Lease | None:
        """One lease, or None."""
        active = self._active_leases().get((namespace, name))
        if active is not None:
            return _lease_copy(active)
        row = self._db.execute("SELECT * FROM leases WHERE namespace=? AND name=?", (namespace, name)).fetchone()
        return _lease(row) if row is not None else None

    def list_leases(self, namespace: str | None = None, active_only: bool = False) -> list[Lease]:
        """Leases in creation order."""
        if active_only:
            ordered = sorted(self._active_leases().values(), key=lambda lease: lease.seq)
            return [_lease_copy(lease) for lease in ordered if namespace is None or lease.namespace == namespace]
        where, params = [], []
        if namespace is not None:
            where.append("namespace=?")
            params.append(namespace)
        sql = "SELECT * FROM leases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        return [_lease(row) for row in self._db.execute(sql, params)]

    # ---- policies -----------------------------------------------------------------------------
    def put_policy(self, policy: Policy) -> None:
        """Create or replace an access policy."""
        self._write(
            "INSERT OR REPLACE INTO policies (namespace, name, exporter_selector, clients, client_selector,"
            " maximum_duration, priority) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                policy.namespace, policy.name, policy.exporter_selector, json.dumps(list(policy.clients)),
                policy.client_selector, policy.maximum_duration, policy.priority,
            ),
        )

    def delete_policy(self, namespace: str, name: str) -> bool:
        """Delete an access policy; False when there was none."""
        return self._write("DELETE FROM policies WHERE namespace=? AND name=?", (namespace, name)) > 0

    def list_policies(self, namespace: str | None = None) -> list[Policy]:
        """Access policies."""
        if namespace is None:
            rows = self._db.execute("SELECT * FROM policies ORDER BY namespace, name")
        else:
            rows = self._db.execute("SELECT * FROM policies WHERE namespace=? ORDER BY name", (namespace,))
        return [
            Policy(
                namespace=row["namespace"], name=row["name"], exporter_selector=row["exporter_selector"],
                clients=tuple(json.loads(row["clients"])), client_selector=row["client_selector"],
                maximum_duration=row["maximum_duration"], priority=row["priority"],
            )
            for row in rows
        ]

    # ---- signing keys -------------------------------------------------------------------------
    def add_signing_key(self, key: SigningKey) -> None:
        """Keep a new signing key."""
        self._write(
            "INSERT INTO signing_keys VALUES (?, ?, ?, ?)", (key.kid, key.private_pem, key.created, key.retired)
        )

    def retire_signing_key(self, kid: str, when: float) -> None:
        """Stop accepting tokens signed with `kid`."""
        self._write("UPDATE signing_keys SET retired=? WHERE kid=?", (when, kid))

    def signing_keys(self) -> list[SigningKey]:
        """Every signing key, oldest first."""
        rows = self._db.execute("SELECT * FROM signing_keys ORDER BY created, rowid")
        return [SigningKey(row["kid"], bytes(row["private_pem"]), row["created"], row["retired"]) for row in rows]

    def close(self) -> None:
        """Close the database (a WAL checkpoint folds the log back into the file)."""
        self._db.close()
        self._lock.close()  # releases the lock (as the kernel does when the process dies)


def _lock_exclusively(path: Path) -> Any:
    """Hold an exclusive lock on `path` for as long as the returned file is open: one controller
    per data directory, because this store caches what it writes. Names the holder otherwise."""
    import fcntl

    from jumpstarter.errors import ConfigurationError

    handle = open(path, "a+")  # kept open on purpose: the lock lives as long as the store
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigurationError(
            f"{path.parent} is in use by another controller (pid {holder}); "
            "one controller per data directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _identity(row: sqlite3.Row) -> Identity:
    return Identity(
        kind=Kind(row["kind"]), namespace=row["namespace"], name=row["name"], labels=json.loads(row["labels"]),
        reported_labels=json.loads(row["reported_labels"]), token_generation=row["token_generation"],
        created=row["created"], enabled=bool(row["enabled"]), username=row["username"],
    )


_IDENTITY_FIELDS = attrgetter(*(f.name for f in dataclasses.fields(Identity)))


def _detached(identity: Identity) -> Identity:
    """A copy sharing nothing mutable with `identity` (the cache's copy stays as written)."""
    copy = Identity(*_IDENTITY_FIELDS(identity))
    copy.labels, copy.reported_labels = dict(copy.labels), dict(copy.reported_labels)
    return copy


_LEASE_FIELDS = attrgetter(*(f.name for f in dataclasses.fields(Lease)))


def _lease_copy(lease: Lease) -> Lease:
    """A copy sharing nothing mutable with `lease`."""
    copy = Lease(*_LEASE_FIELDS(lease))
    copy.tags = dict(copy.tags)
    return copy


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(
        namespace=row["namespace"], name=row["name"], seq=row["seq"], client=row["client"],
        selector=row["selector"], duration=row["duration"], created=row["created"],
        exporter_name=row["exporter_name"], begin_time=row["begin_time"], tags=json.loads(row["tags"]),
        phase=LeasePhase(row["phase"]), exporter=row["exporter"], effective_begin=row["effective_begin"],
        effective_end=row["effective_end"], reason=row["reason"], message=row["message"],
    )
