"""notebook.core.pagination: opaque keyset cursors."""

from __future__ import annotations

import base64
import json

import pytest

from notebook.core.errors import InvalidInput
from notebook.core.pagination import NOTE_ORDERS, decode_cursor, encode_cursor


@pytest.mark.parametrize("order", NOTE_ORDERS)
def test_round_trip(order: str) -> None:
    cursor = encode_cursor(order, "2025-01-02T03:04:05.000006Z", "note:abc")
    assert decode_cursor(cursor, order) == ("2025-01-02T03:04:05.000006Z", "note:abc")


def test_unicode_sort_keys_survive() -> None:
    cursor = encode_cursor("TITLE_ASC", "über café 🐍", "note:1")
    assert decode_cursor(cursor, "TITLE_ASC") == ("über café 🐍", "note:1")


def test_cursor_is_url_safe_text_without_padding() -> None:
    for length in range(1, 6):
        cursor = encode_cursor("TITLE_ASC", "x" * length, "note:1")
        assert "=" not in cursor and "+" not in cursor and "/" not in cursor


def test_cursor_names_the_item_not_an_offset() -> None:
    # the same item gives the same cursor whatever page it was seen on
    assert encode_cursor("UPDATED_DESC", "k", "note:1") == encode_cursor("UPDATED_DESC", "k", "note:1")
    assert encode_cursor("UPDATED_DESC", "k", "note:1") != encode_cursor("UPDATED_DESC", "k", "note:2")


def test_cursor_of_another_order_is_rejected() -> None:
    cursor = encode_cursor("UPDATED_DESC", "k", "note:1")
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor, "TITLE_ASC")
    assert caught.value.extensions == {"field": "after"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        "%%%",
        "a",
        _b64(b"not json"),
        _b64(b"\xff\xfe\xfd"),
        _b64(json.dumps({"order": "UPDATED_DESC"}).encode()),
        _b64(json.dumps(["UPDATED_DESC", "k"]).encode()),
        _b64(json.dumps(["UPDATED_DESC", "k", "note:1", "extra"]).encode()),
        _b64(json.dumps(["UPDATED_DESC", 5, "note:1"]).encode()),
        _b64(json.dumps(["UPDATED_DESC", "k", None]).encode()),
        _b64(b"null"),
    ],
)
def test_forged_or_broken_cursors_are_bad_input(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        decode_cursor(cursor, "UPDATED_DESC")
