"""How note fields are stored: in clear, or sealed (encryption at rest, docs/security.md).

A sealed note document keeps in clear only what queries need: owner, notebook, timestamps,
flags, authors, the clock stamp and the word count. Its title, content and tags are one
AES-256-GCM ciphertext (`sealed`) bound to the document id; the search index holds keyed
hashes instead of words (`tokens`) and tags (`tag_keys`); the tag spellings that `tags` lists
are AES-SIV values (`tag_names`); the title order key is sealed too (`title_key`), so ordering
by title decrypts the keys of the listed scope. `ix` names the index key of the hashes.

Revision documents seal their title, content and tags the same way, bound to their own id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from notebook.core.errors import UndecryptableDocument
from notebook.utils.crypto_utils import (
    DecryptionError,
    blind_hash,
    open_deterministic,
    open_sealed,
    seal,
    seal_deterministic,
    sealed_key_id,
)
from notebook.utils.key_store import DATA, INDEX, KeyRing

SEALED_FIELDS = ("title", "content", "tags")
BLIND_HASHES_KEPT = 50_000  # about 15 MiB at most
_WORD, _TAG = "w", "g"


class NoteCodec:
    """Plain when `ring` is None (ENCRYPTION_ENABLED=false), sealing otherwise."""

    def __init__(
        self,
        ring: KeyRing | None = None,
        refresh: Callable[[], object] | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.ring = ring
        # called once when a document names a key this process does not hold: another
        # instance may have rotated a moment ago (KeyRingSync.refresh)
        self._refresh = refresh
        # called before sealing: this process's keys must be in the replicated key ring before
        # anything is sealed with them (KeyRingSync.ensure_published)
        self._before_write = before_write
        # blind hashes by (index key id, purpose, word): a vocabulary repeats across notes, and
        # the HMAC was a third of an import's time; bounded, started over when full
        self._hashes: dict[tuple[str, str, str], str] = {}

    def _blind(self, index_id: str, index_key: bytes, purpose: str, text: str) -> str:
        memo = (index_id, purpose, text)
        found = self._hashes.get(memo)
        if found is None:
            if len(self._hashes) >= BLIND_HASHES_KEPT:
                self._hashes = {}
            found = self._hashes[memo] = blind_hash(index_key, purpose, text)
        return found

    @property
    def sealed(self) -> bool:
        return self.ring is not None

    # writing ----------------------------------------------------------------------------------
    def seal_note(self, doc: dict[str, Any], deterministic: bool = False) -> dict[str, Any]:
        """A note document built in clear (repository.note_to_doc), sealed in place;
        `deterministic`: the same fields give the same document (crypto_utils.seal)."""
        if self.ring is None:
            return doc
        if self._before_write is not None:
            self._before_write()
        key_id, key = self.ring.active(DATA)
        index_id, index_key = self.ring.active(INDEX)
        fields = {name: doc.pop(name) for name in SEALED_FIELDS}
        doc["sealed"] = seal(key, key_id, _json(fields), f"{doc['_id']}:note", deterministic)
        doc["title_key"] = seal(
            key, key_id, doc["title_key"].encode(), f"{doc['_id']}:title_key", deterministic
        )
        doc["tokens"] = [self._blind(index_id, index_key, _WORD, word) for word in doc["tokens"]]
        doc["tag_keys"] = sorted({self._blind(index_id, index_key, _TAG, tag) for tag in doc["tag_keys"]})
        doc["tag_names"] = [seal_deterministic(index_key, index_id, tag) for tag in fields["tags"]]
        doc["ix"] = index_id
        return doc

    def seal_revision(self, doc: dict[str, Any], deterministic: bool = False) -> dict[str, Any]:
        if self.ring is None:
            return doc
        key_id, key = self.ring.active(DATA)
        fields = {name: doc.pop(name) for name in SEALED_FIELDS}
        doc["sealed"] = seal(key, key_id, _json(fields), f"{doc['_id']}:revision", deterministic)
        return doc

    # reading ----------------------------------------------------------------------------------
    def open_fields(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Title, content and tags of a note or revision document, sealed or not."""
        if "sealed" not in doc:
            return {name: doc.get(name, [] if name == "tags" else "") for name in SEALED_FIELDS}
        purpose = "revision" if doc.get("type") == "note_revision" else "note"
        fields = json.loads(self._open(doc["_id"], doc["sealed"], f"{doc['_id']}:{purpose}"))
        return {name: fields[name] for name in SEALED_FIELDS}

    def title_order(self, doc_id: str, value: str) -> str:
        """The plain title order key of a view row (sealed or not)."""
        if not value.startswith("v1."):
            return value
        return self._open(doc_id, value, f"{doc_id}:title_key").decode()

    def _open(self, doc_id: str, sealed: str, associated: str) -> bytes:
        if self.ring is None:
            raise UndecryptableDocument(doc_id, "encryption is off but the document is sealed")
        try:
            key_id = sealed_key_id(sealed)
            key = self.ring.key(key_id)
            if key is None and self._refresh is not None:
                self._refresh()
                key = self.ring.key(key_id)
            if key is None:
                raise UndecryptableDocument(doc_id, f"unknown or retired key {key_id}")
            return open_sealed(key, sealed, associated)
        except DecryptionError as exc:
            raise UndecryptableDocument(doc_id, str(exc)) from None

    # the blind index --------------------------------------------------------------------------
    def word_terms(self, word: str) -> list[str]:
        """What the index holds for `word`: the word itself, or its hash under every index key
        that notes may still be indexed with (during an index-key rotation, two)."""
        return self._terms(_WORD, word)

    def tag_terms(self, tag_key: str) -> list[str]:
        return self._terms(_TAG, tag_key)

    def _terms(self, purpose: str, text: str) -> list[str]:
        if self.ring is None:
            return [text]
        return [self._blind(key_id, key, purpose, text) for key_id, key in self.ring.readable(INDEX)]

    def tag_spelling(self, value: str) -> str:
        """A tag as a view lists it: its spelling, or its AES-SIV value."""
        if self.ring is None or "." not in value:
            return value
        index_id = value.split(".", 1)[0]
        key = self.ring.key(index_id)
        if key is None:
            raise UndecryptableDocument(f"tag value under {index_id}", "unknown or retired index key")
        try:
            return open_deterministic(key, value)
        except DecryptionError as exc:
            raise UndecryptableDocument("tag value", str(exc)) from None

    def tag_spellings(self, values: Iterable[str]) -> list[str]:
        return [self.tag_spelling(value) for value in values]

    # rotation ---------------------------------------------------------------------------------
    def current(self, doc: dict[str, Any]) -> bool:
        """Whether a note or revision document is sealed with the active keys (nothing to redo)."""
        if self.ring is None:
            return "sealed" not in doc
        if "sealed" not in doc:
            return False
        if sealed_key_id(doc["sealed"]) != self.ring.active(DATA)[0]:
            return False
        return doc.get("type") != "note" or doc.get("ix") == self.ring.active(INDEX)[0]


def _json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
