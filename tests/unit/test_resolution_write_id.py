"""Resolvers on different nodes settling the same leaves write the same body, so CouchDB gives
their answers one revision id instead of a new conflict (the partition test saw 50 rounds)."""

from __future__ import annotations

from notebook.database.couch import resolution_write_id


def test_the_same_leaves_give_the_same_write_id_in_any_order() -> None:
    a = resolution_write_id("note:1", ["2-aaa", "2-bbb"])
    assert a == resolution_write_id("note:1", ["2-bbb", "2-aaa"])


def test_other_leaves_or_another_document_give_another_write_id() -> None:
    base = resolution_write_id("note:1", ["2-aaa", "2-bbb"])
    assert base != resolution_write_id("note:1", ["2-aaa", "3-ccc"])
    assert base != resolution_write_id("note:2", ["2-aaa", "2-bbb"])
    assert len(base) == 32 and int(base, 16) >= 0
