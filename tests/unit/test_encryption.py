"""Encryption at rest, without a database: sealing, the key ring and its files, the codec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from notebook.core.errors import UndecryptableDocument
from notebook.database.note_codec import NoteCodec
from notebook.utils.crypto_utils import (
    DecryptionError,
    blind_hash,
    new_key,
    open_deterministic,
    open_sealed,
    seal,
    seal_deterministic,
)
from notebook.utils.key_store import (
    DATA,
    INDEX,
    KeyRing,
    KeyStoreError,
    KeyStoreFile,
    create_key_files,
    keys_from_json,
    open_key_ring,
)


def test_a_sealed_value_opens_only_with_its_key_and_its_document() -> None:
    key = new_key()
    sealed = seal(key, "dk-1", b"secret", "note:1:note")
    assert b"secret" not in sealed.encode() and open_sealed(key, sealed, "note:1:note") == b"secret"
    assert seal(key, "dk-1", b"secret", "note:1:note") != sealed  # a fresh nonce each time
    with pytest.raises(DecryptionError):
        open_sealed(key, sealed, "note:2:note")  # moved to another document
    with pytest.raises(DecryptionError):
        open_sealed(new_key(), sealed, "note:1:note")
    relabelled = sealed.replace("dk-1", "dk-2")
    with pytest.raises(DecryptionError):
        open_sealed(key, relabelled, "note:1:note")
    tampered = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(DecryptionError):
        open_sealed(key, tampered, "note:1:note")


def test_blind_hashes_and_tag_values_are_keyed_and_deterministic() -> None:
    one, two = new_key(), new_key()
    assert blind_hash(one, "w", "apple") == blind_hash(one, "w", "apple") != blind_hash(two, "w", "apple")
    assert blind_hash(one, "w", "apple") != blind_hash(one, "g", "apple")
    value = seal_deterministic(one, "ik-1", "Work")
    assert value == seal_deterministic(one, "ik-1", "Work") and "Work" not in value
    assert open_deterministic(one, value) == "Work"
    with pytest.raises(DecryptionError):
        open_deterministic(two, value)


def test_rings_merge_by_union_and_states_only_move_forward() -> None:
    ring = KeyRing(new_key())
    first = ring.add(DATA, "active")
    copy = KeyRing(ring.master, ring.stored())
    second = copy.add(DATA, "pending")
    copy.set_state(first.id, "retired")
    assert ring.merge(copy.stored())
    assert {k.id: k.state for k in ring.stored()} == {first.id: "retired", second.id: "pending"}
    stale = KeyRing(ring.master, [first])  # an old copy that still says active
    ring.merge(stale.stored())
    assert ring.get(first.id).state == "retired"  # type: ignore[union-attr]
    with pytest.raises(KeyStoreError):
        ring.set_state(first.id, "active")
    with pytest.raises(KeyStoreError, match="no active data key"):
        ring.active(DATA)


def test_a_ring_of_another_master_key_is_refused() -> None:
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    with pytest.raises(KeyStoreError, match="wrong master key"):
        keys_from_json(ring.to_json(), new_key(), "the key store")
    with pytest.raises(KeyStoreError, match="not wrapped by this master key"):
        KeyRing(new_key(), ring.stored())


def test_key_files_are_private_never_overwritten_and_checked(tmp_path: Path) -> None:
    master, store = tmp_path / "k" / "master.key", tmp_path / "k" / "store.json"
    ring = open_key_ring(master, store, create=True)
    assert {k.kind for k in ring.stored()} == {DATA, INDEX}
    for path in (master, store):
        assert path.stat().st_mode & 0o777 == 0o600
    assert master.read_text().strip() not in store.read_text()
    again = open_key_ring(master, store, create=True)  # read, not made again
    assert [k.id for k in again.stored()] == [k.id for k in ring.stored()]
    with pytest.raises(KeyStoreError, match="exists already"):
        create_key_files(master, store)
    other = tmp_path / "other.key"
    create_key_files(other, tmp_path / "other.json")
    with pytest.raises(KeyStoreError, match="wrong master key"):
        open_key_ring(other, store, create=False)
    with pytest.raises(KeyStoreError, match="ENCRYPTION_KEY_PATH"):
        open_key_ring(tmp_path / "missing.key", store, create=False)
    with pytest.raises(KeyStoreError, match="KEY_STORE_PATH"):
        open_key_ring(master, tmp_path / "missing.json", create=False)


def test_rewrapping_keeps_the_keys_under_a_new_master(tmp_path: Path) -> None:
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    moved = ring.rewrap(new_key())
    KeyStoreFile(tmp_path / "s.json").write(moved)
    data = json.loads((tmp_path / "s.json").read_text())
    assert [k.id for k in keys_from_json(data, moved.master, "x")] == [k.id for k in ring.stored()]
    assert moved.active(DATA) == ring.active(DATA)
    with pytest.raises(KeyStoreError):
        keys_from_json(data, ring.master, "x")


def _note_doc() -> dict:
    return {
        "_id": "note:1", "type": "note", "title": "Plan apples", "content": "buy pears",
        "tags": ["Food"], "tag_keys": ["food"], "tokens": ["plan", "apples", "buy", "pears"],
        "title_key": "706c616e", "owner_id": "user:1",
    }  # fmt: skip


def test_the_codec_seals_every_text_field_and_opens_them_again() -> None:
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    ring.add(INDEX, "active")
    codec = NoteCodec(ring)
    doc = codec.seal_note(_note_doc())
    text = json.dumps(doc)
    for word in ("Plan", "apples", "pears", "Food", "food", "706c616e"):
        assert word not in text
    assert codec.open_fields(doc) == {"title": "Plan apples", "content": "buy pears", "tags": ["Food"]}
    assert codec.title_order("note:1", doc["title_key"]) == "706c616e"
    assert codec.word_terms("pears")[0] in doc["tokens"] and codec.tag_terms("food")[0] in doc["tag_keys"]
    assert codec.tag_spellings(doc["tag_names"]) == ["Food"]
    moved = {**doc, "_id": "note:2"}
    with pytest.raises(UndecryptableDocument, match="note:2"):
        codec.open_fields(moved)


def test_during_an_index_rotation_a_word_has_a_term_per_index_key() -> None:
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    old = ring.add(INDEX, "active")
    codec = NoteCodec(ring)
    before = codec.seal_note(_note_doc())
    new = ring.add(INDEX, "active")
    ring.set_state(old.id, "decrypt-only")
    after = codec.seal_note(_note_doc())
    terms = codec.word_terms("pears")
    assert len(terms) == 2 and terms[1] in before["tokens"] and terms[0] in after["tokens"]
    assert after["ix"] == new.id and not codec.current(before) and codec.current(after)
    ring.set_state(old.id, "retired")
    assert codec.word_terms("pears") == terms[:1]


def test_a_plain_codec_leaves_documents_in_clear_and_refuses_sealed_ones() -> None:
    plain = NoteCodec()
    assert plain.seal_note(_note_doc()) == _note_doc()
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    ring.add(INDEX, "active")
    with pytest.raises(UndecryptableDocument, match="encryption is off"):
        plain.open_fields(NoteCodec(ring).seal_note(_note_doc()))


def test_deterministic_sealing_gives_one_document_for_one_answer() -> None:
    """Resolvers on several nodes seal the same merge: their documents must be identical."""
    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    ring.add(INDEX, "active")
    codec = NoteCodec(ring)
    one, two = (
        codec.seal_note(_note_doc(), deterministic=True),
        codec.seal_note(_note_doc(), deterministic=True),
    )
    assert one == two and codec.open_fields(one)["content"] == "buy pears"
    other = _note_doc()
    other["content"] = "buy plums"
    assert codec.seal_note(other, deterministic=True)["sealed"] != one["sealed"]  # another nonce
    assert codec.seal_note(_note_doc())["sealed"] != codec.seal_note(_note_doc())["sealed"]  # random


def test_two_processes_publishing_the_ring_at_once_both_succeed(make_client: Any) -> None:
    """The first sealed writes of a new deployment's two workers: each reads no ring, both
    write one; the second write conflicts, and is read again rather than failing the request."""
    from notebook.database.keyring_sync import KeyRingSync

    class ReadBeforeTheOther(KeyRingSync):
        reads = 0

        def _leaves(self, node: str | None = None) -> list[dict[str, Any]]:
            self.reads += 1
            return [] if self.reads == 1 else super()._leaves(node)  # the first read was too early

    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    ring.add(INDEX, "active")
    notes = make_client().database("notes")
    first = KeyRingSync(KeyRing(ring.master, ring.stored()), notes)
    second = ReadBeforeTheOther(KeyRing(ring.master, ring.stored()), notes)
    first.ensure_published()
    second.ensure_published()  # no CouchError: its conflict was read again
    assert first.published and second.published and second.reads == 2
    stored = notes.get("keyring")
    assert {key["id"] for key in stored["keys"]} == {key.id for key in ring.stored()}


def test_blind_hashes_are_remembered_per_index_key_and_stay_bounded(monkeypatch: Any) -> None:
    import notebook.database.note_codec as note_codec

    ring = KeyRing(new_key())
    ring.add(DATA, "active")
    index = ring.add(INDEX, "active")
    codec = NoteCodec(ring)
    first = codec.word_terms("garden")
    assert codec.word_terms("garden") == first == [blind_hash(ring.key(index.id), "w", "garden")]
    assert codec.tag_terms("garden") != first  # another purpose, another entry
    monkeypatch.setattr(note_codec, "BLIND_HASHES_KEPT", 3)
    for word in ("a", "b", "c", "d", "e"):
        codec.word_terms(word)
    assert len(codec._hashes) <= 3
    assert codec.word_terms("garden") == first  # computed again, the same
