"""Input rules shared by every entry point."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from notebook.core.domain import Note
from notebook.core.errors import InvalidInput, PayloadTooLarge

MAX_TITLE_CHARS = 500
MAX_CONTENT_BYTES = 1024 * 1024
MAX_TAGS = 50
MAX_TAG_CHARS = 64
MAX_NOTEBOOK_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_DISPLAY_NAME_CHARS = 100
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 256
MAX_PAGE_SIZE = 100
MAX_IMPORT_NOTES = 1000

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if _CONTROL.search(value):
        raise InvalidInput(f"{field} contains control characters", field=field)
    return value


def title(value: object) -> str:
    text = _text(value, "title").strip()
    if not text:
        raise InvalidInput("title must not be empty", field="title")
    if len(text) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title is longer than {MAX_TITLE_CHARS} characters", field="title")
    return text


def content(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput("content must be a string", field="content")
    if len(value.encode("utf-8")) > MAX_CONTENT_BYTES:
        raise PayloadTooLarge("content is larger than 1 MiB", field="content")
    return value


def tags(values: object) -> list[str]:
    """Strip, drop duplicates (keeping the first spelling) and bound the tag list."""
    if not isinstance(values, list):
        raise InvalidInput("tags must be a list of strings", field="tags")
    if len(values) > MAX_TAGS:
        raise InvalidInput(f"a note has at most {MAX_TAGS} tags", field="tags")
    result: list[str] = []
    seen: set[str] = set()
    for raw in values:
        tag = _text(raw, "tags").strip()
        if not tag:
            raise InvalidInput("tags must not be empty", field="tags")
        if len(tag) > MAX_TAG_CHARS:
            raise InvalidInput(f"a tag is at most {MAX_TAG_CHARS} characters", field="tags")
        key = tag.casefold()
        if key not in seen:
            seen.add(key)
            result.append(tag)
    return result


def notebook_name(value: object) -> str:
    text = _text(value, "name").strip()
    if not text:
        raise InvalidInput("name must not be empty", field="name")
    if len(text) > MAX_NOTEBOOK_NAME_CHARS:
        raise InvalidInput(f"name is longer than {MAX_NOTEBOOK_NAME_CHARS} characters", field="name")
    return text


def description(value: object) -> str | None:
    if value is None:
        return None
    text = _text(value, "description").strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(
            f"description is longer than {MAX_DESCRIPTION_CHARS} characters", field="description"
        )
    return text or None


def email(value: object) -> str:
    text = unicodedata.normalize("NFC", _text(value, "email")).strip().lower()
    if len(text) > 254 or not _EMAIL.match(text):
        raise InvalidInput("email is not a valid address", field="email")
    return text


def password(value: object) -> str:
    text = _text(value, "password")
    if not MIN_PASSWORD_CHARS <= len(text) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(
            f"password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters", field="password"
        )
    return text


def display_name(value: object) -> str | None:
    if value is None:
        return None
    text = _text(value, "displayName").strip()
    if len(text) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidInput(
            f"displayName is longer than {MAX_DISPLAY_NAME_CHARS} characters", field="displayName"
        )
    return text or None


def page_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidInput(f"first must be between 1 and {MAX_PAGE_SIZE}", field="first")
    return value


def apply_note_input(note: Note, changes: Mapping[str, Any]) -> Note:
    """Apply the fields an UpdateNoteInput sets (None means unchanged), each checked."""
    if changes.get("title") is not None:
        note.title = title(changes["title"])
    if changes.get("content") is not None:
        note.content = content(changes["content"])
    if changes.get("tags") is not None:
        note.tags = tags(changes["tags"])
    if changes.get("pinned") is not None:
        note.pinned = bool(changes["pinned"])
    return note
