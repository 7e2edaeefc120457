"""Reading raw note documents in tests: with encryption at rest they hold only ciphertext, so a
test that checks stored fields opens them with the test key ring (TestingConfig's key files,
shared by every test app of this user) or with an app's own codec."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from config.settings import TestingConfig
from notebook.database.note_codec import NoteCodec
from notebook.utils.key_store import open_key_ring


@functools.cache
def test_codec() -> NoteCodec:
    config = TestingConfig()
    ring = open_key_ring(Path(config.encryption_key_path), Path(config.key_store_path), create=True)
    return NoteCodec(ring)


def opened(doc: dict[str, Any] | None, codec: NoteCodec | None = None) -> dict[str, Any] | None:
    """`doc` with its sealed title, content and tags opened in place (unchanged when clear)."""
    if doc is None or "sealed" not in doc:
        return doc
    return {**doc, **(codec or test_codec()).open_fields(doc)}
