"""The keys of encryption at rest (docs/security.md, "Encryption at rest"), where they live, and
how every app instance comes to hold the same ones.

- The master key is a file (ENCRYPTION_KEY_PATH, 32 random bytes, base64) on every app host. It
  is never stored in a database.
- Data keys (they seal note fields) and index keys (they make the blind index) are wrapped by
  the master key. They are kept in two places:
  - the key store file (KEY_STORE_PATH) on each host, which lets a process start, and check its
    master key, before any database answers;
  - the `keyring` document of the notes database, which replication carries to every node.
    Rotation goes through it (services/key_service.py): a new key is written to every node
    before any instance may use it, so no instance ever writes with a key that another cannot
    read, on whichever node it reads.
- A key's state only moves forward: pending → active → decrypt-only → retired. Two copies of the
  key ring (a file and the document, or two conflicting leaves of the document) merge by union,
  each key taking its furthest state, so merging can never lose a key or revive a retired one.
  The newest active key seals new writes; active and decrypt-only keys open old ones.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notebook.utils.crypto_utils import (
    KEY_BYTES,
    DecryptionError,
    blind_hash,
    new_key,
    unwrap_key,
    wrap_key,
)

KEYRING_DOC_ID = "keyring"
STATES = ("pending", "active", "decrypt-only", "retired")
DATA, INDEX = "data", "index"
_CHECK_ID = "master-check"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KeyStoreError(Exception):
    """The keys cannot be used: missing, unreadable, or not opened by this master key. The
    message is one line for an operator and never holds key material."""


@dataclass(frozen=True)
class StoredKey:
    id: str
    kind: str  # DATA or INDEX
    created_at: str
    state: str
    wrapped: str

    def furthest(self, other: StoredKey) -> StoredKey:
        return self if STATES.index(self.state) >= STATES.index(other.state) else other


def master_fingerprint(master: bytes) -> str:
    """Names a master key without revealing it (so instances can tell which one wrapped a ring)."""
    return blind_hash(master, "master fingerprint", "")[:16]


class KeyRing:
    """The keys this process holds, unwrapped in memory; safe to share between threads."""

    def __init__(self, master: bytes, keys: Iterable[StoredKey] = ()) -> None:
        self._lock = threading.Lock()
        self.master = master
        self._stored: dict[str, StoredKey] = {}
        self._plain: dict[str, bytes] = {}
        self.merge(keys)

    # reading ------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return master_fingerprint(self.master)

    def stored(self) -> list[StoredKey]:
        with self._lock:
            return sorted(self._stored.values(), key=lambda k: (k.created_at, k.id))

    def get(self, key_id: str) -> StoredKey | None:
        with self._lock:
            return self._stored.get(key_id)

    def active(self, kind: str) -> tuple[str, bytes]:
        """The newest active key of `kind`: what new writes use."""
        with self._lock:
            candidates = [k for k in self._stored.values() if k.kind == kind and k.state == "active"]
            if not candidates:
                raise KeyStoreError(f"the key store has no active {kind} key")
            chosen = max(candidates, key=lambda k: (k.created_at, k.id))
            return chosen.id, self._plain[chosen.id]

    def key(self, key_id: str) -> bytes | None:
        """A key that may open data: any state but retired."""
        with self._lock:
            stored = self._stored.get(key_id)
            if stored is None or stored.state == "retired":
                return None
            return self._plain[key_id]

    def readable(self, kind: str) -> list[tuple[str, bytes]]:
        """Every key of `kind` that data may still be under (active and decrypt-only, and a
        pending one, which another instance may already have activated), newest first."""
        with self._lock:
            keys = [k for k in self._stored.values() if k.kind == kind and k.state != "retired"]
            keys.sort(key=lambda k: (k.created_at, k.id), reverse=True)
            return [(k.id, self._plain[k.id]) for k in keys]

    # changing -----------------------------------------------------------------------------
    def merge(self, keys: Iterable[StoredKey]) -> bool:
        """Take in keys from another copy of the ring; True when anything changed."""
        changed = False
        with self._lock:
            for incoming in keys:
                current = self._stored.get(incoming.id)
                merged = incoming if current is None else current.furthest(incoming)
                if current is None:
                    try:
                        self._plain[incoming.id] = unwrap_key(self.master, incoming.id, incoming.wrapped)
                    except DecryptionError:
                        raise KeyStoreError(
                            f"key {incoming.id} is not wrapped by this master key "
                            "(ENCRYPTION_KEY_PATH is not the key the key store was made with)"
                        ) from None
                if merged != current:
                    self._stored[incoming.id] = merged
                    changed = True
        return changed

    def add(self, kind: str, state: str = "pending") -> StoredKey:
        key_id = f"{kind[0]}k-{secrets.token_hex(6)}"  # dk-… data, ik-… index
        plain = new_key()
        stored = StoredKey(key_id, kind, utc_now(), state, wrap_key(self.master, key_id, plain))
        with self._lock:
            self._stored[key_id] = stored
            self._plain[key_id] = plain
        return stored

    def set_state(self, key_id: str, state: str) -> StoredKey:
        with self._lock:
            stored = self._stored[key_id]
            if STATES.index(state) < STATES.index(stored.state):
                raise KeyStoreError(f"key {key_id} is {stored.state}; it cannot become {state} again")
            self._stored[key_id] = replace(stored, state=state)
            return self._stored[key_id]

    def rewrap(self, master: bytes) -> KeyRing:
        """The same keys wrapped by another master key (master-key rotation)."""
        with self._lock:
            keys = [
                replace(k, wrapped=wrap_key(master, k.id, self._plain[k.id])) for k in self._stored.values()
            ]
        return KeyRing(master, keys)

    # copies -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "master": self.fingerprint,
            # the same on every write, so that two processes writing the same ring write one body
            "master_check": wrap_key(self.master, _CHECK_ID, bytes(KEY_BYTES), deterministic=True),
            "keys": [asdict(k) for k in self.stored()],
        }


def keys_from_json(data: Mapping[str, Any], master: bytes, where: str) -> list[StoredKey]:
    """The stored keys of a key-ring copy, after checking that `master` made it."""
    try:
        unwrap_key(master, _CHECK_ID, str(data.get("master_check", "")))
    except DecryptionError:
        raise KeyStoreError(
            f"the master key (ENCRYPTION_KEY_PATH) does not open {where}: wrong master key file"
        ) from None
    try:
        return [
            StoredKey(**{f: str(k[f]) for f in ("id", "kind", "created_at", "state", "wrapped")})
            for k in data["keys"]
        ]
    except (KeyError, TypeError) as exc:
        raise KeyStoreError(f"{where} is damaged ({exc.__class__.__name__})") from None


# -- files ---------------------------------------------------------------------------------------
def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def read_master_key(path: Path) -> bytes:
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except FileNotFoundError:
        raise KeyStoreError(
            f"no master key at ENCRYPTION_KEY_PATH ({path}); create one with `notebook-server keys init`"
        ) from None
    except (OSError, binascii.Error, ValueError) as exc:
        raise KeyStoreError(f"the master key file {path} cannot be read ({exc.__class__.__name__})") from None
    if len(key) != KEY_BYTES:
        raise KeyStoreError(f"the master key file {path} does not hold a {KEY_BYTES}-byte key")
    return key


def write_master_key(path: Path, key: bytes) -> None:
    _write_private(path, base64.b64encode(key).decode() + "\n")


class KeyStoreFile:
    """KEY_STORE_PATH: this host's copy of the wrapped keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self, master: bytes) -> list[StoredKey]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise KeyStoreError(
                f"no key store at KEY_STORE_PATH ({self.path}); create one with `notebook-server keys init`"
            ) from None
        except (OSError, ValueError) as exc:
            raise KeyStoreError(
                f"the key store {self.path} cannot be read ({exc.__class__.__name__})"
            ) from None
        return keys_from_json(data, master, f"the key store {self.path}")

    def write(self, ring: KeyRing) -> None:
        with self._lock:
            _write_private(self.path, json.dumps(ring.to_json(), indent=1) + "\n")


def create_key_files(master_path: Path, store_path: Path) -> KeyRing:
    """A new master key and a key store with one active data key and one active index key.
    Refuses to overwrite either file (that would make every stored note unreadable)."""
    for path in (master_path, store_path):
        if path.exists():
            raise KeyStoreError(f"{path} exists already; refusing to overwrite a key file")
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    ring.add(INDEX, "active")
    write_master_key(master_path, ring.master)
    KeyStoreFile(store_path).write(ring)
    return ring


def open_key_ring(master_path: Path, store_path: Path, create: bool) -> KeyRing:
    """The key ring of the files; with `create` (development, tests), both files are made on
    first use. KeyStoreError with a one-line reason otherwise."""
    if create:
        master_path.parent.mkdir(parents=True, exist_ok=True)
        # several workers start at once: one creates, the others wait for it and read
        with open(master_path.with_name(f".{master_path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not master_path.exists() and not store_path.exists():
                return create_key_files(master_path, store_path)
    master = read_master_key(master_path)
    return KeyRing(master, KeyStoreFile(store_path).read(master))
