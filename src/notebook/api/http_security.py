"""Security headers of every response, and a development server that names no versions."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from typing import Any

from flask import Response
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import WSGIRequestHandler

# JSON answers load nothing and may be framed by no one
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SERVER_NAME = "NoteBook"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str, sources: str = "'self'") -> str:
    """A CSP for a page of ours: scripts and styles from `sources` (this server) and its own
    inline scripts by hash; data only from this server; nothing from anywhere else.

    Inline styles stay allowed: GraphiQL sets style attributes from its scripts.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src {sources} {hashes}; "
        f"style-src {sources} 'unsafe-inline'; font-src {sources} data:; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def explorer_policy(html: str) -> str:
    """The explorer page's CSP: its assets from this server (pages.py), its inline script."""
    return page_policy(html)


# a year, as browsers' preload lists require; sent only on answers the client got over HTTPS
HSTS = "max-age=31536000; includeSubDomains"


def add_security_headers(response: Response, secure: bool = False) -> Response:
    """nosniff, no framing, no referrer, no caching, and a CSP unless the page set its own;
    HSTS when the client's hop was HTTPS (`secure`: direct TLS, or a trusted proxy said so)."""
    headers = response.headers
    if secure:
        headers["Strict-Transport-Security"] = HSTS
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    # answers carry tokens and private notes: no browser or proxy may keep them
    headers["Cache-Control"] = "no-store"
    headers.setdefault("Content-Security-Policy", API_POLICY)
    return response


def bound_chunked_body(environ: dict[str, Any], limit: int) -> None:
    """Read a chunked body (no Content-Length) up to `limit` bytes; 413 when it is longer.

    Werkzeug stops reading such a body at MAX_CONTENT_LENGTH but hands over the truncated part
    without an error, so an oversized chunked body would surface as malformed JSON (400). The
    body read here replaces the stream, with its length declared, so Flask sees a plain request.
    """
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not chunked or environ.get("CONTENT_LENGTH") or not environ.get("wsgi.input_terminated"):
        return
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = stream.read(min(64 * 1024, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(b"".join(parts))
    environ["CONTENT_LENGTH"] = str(size)


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler without "Server: Werkzeug/x.y Python/x.y"."""

    def version_string(self) -> str:
        return SERVER_NAME
