"""Opaque keyset cursors: a cursor names the last item seen, never an offset."""

from __future__ import annotations

import base64
import binascii
import json

from notebook.core.errors import InvalidInput

NOTE_ORDERS = ("UPDATED_DESC", "UPDATED_ASC", "CREATED_DESC", "TITLE_ASC")


def encode_cursor(order: str, sort_key: str, doc_id: str) -> str:
    raw = json.dumps([order, sort_key, doc_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[str, str]:
    """Return (sort_key, doc_id); a cursor from another ordering or a forged one is bad input."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("after is not a valid cursor", field="after") from None
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(part, str) for part in value):
        raise InvalidInput("after is not a valid cursor", field="after")
    if value[0] != order:
        raise InvalidInput("after was issued for another orderBy", field="after")
    return value[1], value[2]
