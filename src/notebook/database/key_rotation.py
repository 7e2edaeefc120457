"""Rotation of the encryption keys (docs/security.md, "Key rotation"): the admin CLI's
`notebook-server keys ...` commands.

- `rotate` (data key) and `rotate --index` (index key): a new key is added as pending and written
  to every node, then made active (the previous one becomes decrypt-only) and written to every
  node again. Every app process reads the ring within KEYRING_REFRESH_SECONDS; one that meets a
  document under a key it does not hold reads the ring at once. If a node cannot take the ring,
  the command stops before activating: nothing is ever sealed with a key a node lacks.
- `reencrypt`: rewrites, in batches, every note and revision still under a non-active data key
  or index key (or still in clear). What is left to do is read from the `sealed_keys` view, so
  a killed run resumes where it stopped. Each document is written on the revision it was read
  at: a concurrent edit wins (the write is refused and the edit is sealed with the active key
  anyway), and nothing else of a note changes (same clock stamp, same updated_at), so a
  re-encryption never looks like an edit to conflict merging.
- `retire KEY`: refuses while any document still needs the key.
- `rotate-master`: the same data and index keys, wrapped by a new master key; written to every
  node and to new key files that the operator installs on every host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from notebook.database.couch import Database
from notebook.database.design_docs import NOTES_DESIGN
from notebook.database.keyring_sync import KeyRingSync
from notebook.database.repository import NoteRepository
from notebook.utils.crypto_utils import new_key
from notebook.utils.key_store import (
    DATA,
    INDEX,
    KeyRing,
    KeyStoreError,
    KeyStoreFile,
    StoredKey,
    write_master_key,
)

CLEAR = "clear"  # the sealed_keys view's key for documents stored in clear


@dataclass
class ReencryptReport:
    rewritten: int = 0
    refused: int = 0  # changed meanwhile: their new version is sealed with the active key
    remaining: dict[str, int] = field(default_factory=dict)


class KeyRotation:
    def __init__(self, sync: KeyRingSync, repository: NoteRepository, nodes: tuple[str, ...]) -> None:
        self.sync = sync
        self.ring: KeyRing = sync.ring
        self.repository = repository
        self.notes: Database = repository.db
        self.nodes = nodes

    # reading ----------------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """Documents per key id (and CLEAR), from the sealed_keys view."""
        rows = self.notes.view(NOTES_DESIGN, "sealed_keys", group=True)["rows"]
        return {row["key"]: row["value"] for row in rows}

    def status(self) -> list[tuple[StoredKey, int]]:
        self.sync.refresh()
        usage = self.usage()
        return [(key, usage.get(key.id, 0)) for key in self.ring.stored()]

    def stale(self) -> dict[str, int]:
        """What `reencrypt` has left: documents per key id that is not an active one."""
        current = {self.ring.active(DATA)[0], self.ring.active(INDEX)[0]}
        return {key: count for key, count in self.usage().items() if key not in current and count}

    # rotating ---------------------------------------------------------------------------------
    def rotate(self, kind: str = DATA) -> StoredKey:
        self.sync.refresh()
        previous = [k for k in self.ring.stored() if k.kind == kind and k.state == "active"]
        added = self.ring.add(kind, "pending")
        self.sync.publish_everywhere(self.nodes)  # every node holds it before anyone uses it
        self.ring.set_state(added.id, "active")
        for key in previous:
            self.ring.set_state(key.id, "decrypt-only")
        self.sync.publish_everywhere(self.nodes)
        return self.ring.get(added.id) or added

    def retire(self, key_id: str) -> StoredKey:
        self.sync.refresh()
        key = self.ring.get(key_id)
        if key is None:
            raise KeyStoreError(f"no key {key_id} in the key ring")
        if key.state in ("active", "pending"):
            raise KeyStoreError(f"key {key_id} is {key.state}; rotate first")
        still = self.usage().get(key_id, 0)
        if still:
            raise KeyStoreError(f"{still} documents still use key {key_id}; run `keys reencrypt` first")
        self.ring.set_state(key_id, "retired")
        self.sync.publish_everywhere(self.nodes)
        return self.ring.get(key_id) or key

    def rotate_master(self, master_path: Path, store_path: Path) -> KeyRing:
        """Re-wrap every key under a new master key, written to `master_path` and `store_path`
        (new files: the current ones stay until the operator swaps them) and to every node."""
        for path in (master_path, store_path):
            if path.exists():
                raise KeyStoreError(f"{path} exists already; give new file names")
        self.sync.refresh()
        rewrapped = self.ring.rewrap(new_key())
        write_master_key(master_path, rewrapped.master)
        KeyStoreFile(store_path).write(rewrapped)
        moved = KeyRingSync(rewrapped, self.notes, KeyStoreFile(store_path))
        for node in self.nodes:  # replace the ring: its leaves are wrapped by the old master
            moved.replace_on(node)
        return rewrapped

    # re-encrypting ----------------------------------------------------------------------------
    def reencrypt(
        self, batch: int = 100, progress: Callable[[int], None] | None = None, max_rounds: int = 10_000
    ) -> ReencryptReport:
        report = ReencryptReport()
        self.sync.refresh()
        for _ in range(max_rounds):
            stale = self.stale()
            if not stale:
                break
            for key_id in stale:
                rows = self.notes.view(
                    NOTES_DESIGN, "sealed_keys", key=key_id, reduce=False, include_docs=True, limit=batch
                )["rows"]
                docs = [self.repository.resealed(row["doc"]) for row in rows if row.get("doc")]
                if not docs:
                    continue
                results = self.notes.bulk_docs(docs)
                done = sum(1 for r in results if r.get("rev") and not r.get("error"))
                report.rewritten += done
                report.refused += len(docs) - done
                if progress is not None:
                    progress(done)
            self.sync.refresh()  # a rotation may have happened meanwhile
        report.remaining = self.stale()
        return report
