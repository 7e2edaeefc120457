"""The replicated key ring: the `keyring` document of the notes database (utils/key_store.py
says what it holds and why it merges safely).

Every app process follows it (`KeyRingSync.run`, every KEYRING_REFRESH_SECONDS) and reads it
at once when a document names a key it does not hold. A rotation writes it to every node
(`publish_everywhere`) before the new key may be used."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from notebook.database.couch import CouchError, Database
from notebook.utils.key_store import (
    DATA,
    INDEX,
    KEYRING_DOC_ID,
    KeyRing,
    KeyStoreError,
    KeyStoreFile,
    keys_from_json,
)
from notebook.utils.metrics import ENCRYPTION_KEY_IN_USE

log = logging.getLogger(__name__)


class KeyRingSync:
    def __init__(self, ring: KeyRing, notes: Database, store: KeyStoreFile | None = None) -> None:
        self.ring = ring
        self.notes = notes
        self.store = store
        self._lock = threading.Lock()
        self.published = False  # this process's keys are in the replicated document

    def _leaves(self, node: str | None = None) -> list[dict[str, Any]]:
        # never from the read cache: a copy older than the feed's delay would make the write
        # that follows conflict
        doc = _get_on(self.notes, node, {"conflicts": True})
        if doc is None:
            return []
        conflicts = doc.get("_conflicts", [])
        if not conflicts:
            return [doc]
        # the other leaves from the same node as the winner (a rotation reads each node's own)
        answers = self.notes.client.request(
            "GET",
            f"{self.notes.name}/{KEYRING_DOC_ID}",
            params={"open_revs": json.dumps(conflicts)},
            node=node,
        )
        others = [a["ok"] for a in answers if isinstance(a, dict) and a.get("ok")]
        return [doc, *[leaf for leaf in others if not leaf.get("_deleted")]]

    def _merge(self, leaves: list[dict[str, Any]]) -> bool:
        changed = False
        for leaf in leaves:
            changed |= self.ring.merge(keys_from_json(leaf, self.ring.master, "the replicated key ring"))
        return changed

    def _write(self, leaves: list[dict[str, Any]], node: str | None = None) -> None:
        """The ring as the document's one leaf: the merged body on the winner, the other leaves
        deleted (their keys are in the merge)."""
        body = {"_id": KEYRING_DOC_ID, "type": "keyring", **self.ring.to_json()}
        if leaves:
            body["_rev"] = leaves[0]["_rev"]
        docs = [body] + [
            {"_id": KEYRING_DOC_ID, "_rev": leaf["_rev"], "_deleted": True} for leaf in leaves[1:]
        ]
        path = f"{self.notes.name}/_bulk_docs"
        answer = self.notes.client.request("POST", path, body={"docs": docs}, node=node)
        for result in answer if isinstance(answer, list) else []:
            if result.get("error") and result.get("rev") is None and result.get("id") == KEYRING_DOC_ID:
                raise CouchError(409, "conflict", "the key ring changed meanwhile; try again")

    def _needs_write(self, leaves: list[dict[str, Any]]) -> bool:
        if len(leaves) != 1:
            return True
        stored = {k["id"]: k.get("state") for k in leaves[0].get("keys", [])}
        return stored != {k.id: k.state for k in self.ring.stored()}

    def refresh(self) -> bool:
        """Read the replicated ring, take in what it adds, and write back what it lacks; True
        when this process learnt something. Storage errors propagate (the caller retries)."""
        with self._lock:
            leaves = self._leaves()
            changed = self._merge(leaves)
            if self._needs_write(leaves):
                self._write(leaves)
            self.published = True
            self._report()
            if changed:
                log.info(
                    "key ring updated", extra={"keys": [f"{k.id}:{k.state}" for k in self.ring.stored()]}
                )
                self._save()
            return changed

    def _report(self) -> None:
        """The keys in use, for /metrics (a rotated-away key's series drops to 0)."""
        for kind in (DATA, INDEX):
            try:
                active = self.ring.active(kind)[0]
            except KeyStoreError:
                continue
            for key in self.ring.stored():
                if key.kind == kind:
                    ENCRYPTION_KEY_IN_USE.labels(kind, key.id).set(1 if key.id == active else 0)

    def _save(self) -> None:
        """Keep this host's key store file up to date; the replicated document is what counts,
        so a read-only file (a container's mounted secret) is only logged."""
        if self.store is None:
            return
        try:
            self.store.write(self.ring)
        except OSError as exc:
            log.warning("key store file not updated (%s); the replicated key ring has the keys", exc.strerror)

    def ensure_published(self, tries: int = 3) -> None:
        """Before the first sealed write: the ring is in the database. Another process
        publishing at the same moment (two workers' first writes of a new deployment) makes
        ours conflict; the next read takes its ring in, and usually there is nothing left to
        write."""
        for attempt in range(1, tries + 1):
            if self.published:
                return
            try:
                self.refresh()
            except CouchError as exc:
                if exc.status != 409 or attempt == tries:
                    raise
                log.info("key ring published concurrently; reading it again")

    def publish_everywhere(self, nodes: tuple[str, ...]) -> None:
        """Write the ring to every node directly (a rotation's step): CouchError when a node
        cannot take it, and then nothing may use the new state yet."""
        with self._lock:
            for node in nodes:
                leaves = self._leaves(node)
                self._merge(leaves)
                self._write(leaves, node)
            self._save()

    def replace_on(self, node: str) -> None:
        """Write this ring over the document on `node` without merging (master-key rotation:
        the stored leaves are wrapped by the previous master key and hold the same keys)."""
        with self._lock:
            doc = _get_on(self.notes, node, {"conflicts": True})
            leaves = [doc, *({"_rev": rev} for rev in doc.get("_conflicts", []))] if doc else []
            self._write(leaves, node)

    def run(self, stop: threading.Event, seconds: float) -> None:
        while not stop.wait(seconds):
            try:
                self.refresh()
            except (CouchError, KeyStoreError) as exc:
                log.warning("key ring not refreshed: %s", exc)
            except Exception:  # noqa: BLE001 - a background loop must not die
                log.exception("key ring refresh failed")


def _get_on(db: Database, node: str | None, params: dict[str, Any]) -> dict[str, Any] | None:
    """The key ring document from `node` (None: the active node), read from the database."""
    try:
        return db.client.request("GET", f"{db.name}/{KEYRING_DOC_ID}", params=params, node=node)
    except CouchError as exc:
        if exc.status == 404:
            return None
        raise
