"""Request paths and query parameters as CouchDB expects them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

import httpx

# view parameters that CouchDB expects as JSON values
_JSON_PARAMS = {"key", "keys", "startkey", "endkey", "start_key", "end_key"}


def quote_id(doc_id: str) -> str:
    """Quote a document id for a URL path; design documents keep their slash."""
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + quote(doc_id[len(prefix) :], safe="")
    return quote(doc_id, safe="")


def strip_credentials(url: str) -> str:
    """A node URL safe to show: no user, no password."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None))


def segments(path: str) -> list[str]:
    """The unquoted segments of a request path, without its query."""
    return [unquote(part) for part in path.split("?")[0].strip("/").split("/") if part]


def encode_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query parameters as strings; JSON for the view parameters that take JSON values."""
    if not params:
        return None
    encoded: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _JSON_PARAMS:
            encoded[name] = json.dumps(value)
        elif isinstance(value, bool):
            encoded[name] = "true" if value else "false"
        else:
            encoded[name] = str(value)
    return encoded or None
