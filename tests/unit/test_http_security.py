"""notebook.api.http_security: headers, the explorer's CSP and the bound on chunked bodies."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import pytest
from flask import Response
from werkzeug.exceptions import RequestEntityTooLarge

from notebook.api.http_security import (
    API_POLICY,
    QuietRequestHandler,
    add_security_headers,
    bound_chunked_body,
    explorer_policy,
)

LIMIT = 100


def chunked_environ(body: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input_terminated": True,
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_a_chunked_body_within_the_limit_is_kept_whole(size: int) -> None:
    body = bytes(range(size))
    environ = chunked_environ(body)
    bound_chunked_body(environ, LIMIT)
    assert environ["CONTENT_LENGTH"] == str(size)
    assert environ["wsgi.input"].read() == body


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT, 200_000])
def test_a_chunked_body_over_the_limit_is_refused_after_reading_one_byte_more(size: int) -> None:
    environ = chunked_environ(b"y" * size)
    with pytest.raises(RequestEntityTooLarge):
        bound_chunked_body(environ, LIMIT)
    assert environ["wsgi.input"].tell() == LIMIT + 1  # no more of the body was read


@pytest.mark.parametrize(
    "environ",
    [
        {"CONTENT_LENGTH": "5", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
        {"HTTP_TRANSFER_ENCODING": "gzip", "wsgi.input_terminated": True},
        {"HTTP_TRANSFER_ENCODING": "chunked"},  # the server does not end the stream: werkzeug reads none
    ],
)
def test_other_bodies_are_left_to_werkzeug(environ: dict[str, Any]) -> None:
    stream = io.BytesIO(b"z" * (10 * LIMIT))
    environ = {**environ, "wsgi.input": stream}
    bound_chunked_body(environ, LIMIT)
    assert environ["wsgi.input"] is stream and stream.tell() == 0


def test_security_headers_keep_a_page_policy() -> None:
    plain = add_security_headers(Response("{}"))
    assert plain.headers["Content-Security-Policy"] == API_POLICY
    assert plain.headers["Cache-Control"] == "no-store"
    page = add_security_headers(Response("<p>", headers={"Content-Security-Policy": "default-src 'self'"}))
    assert page.headers["Content-Security-Policy"] == "default-src 'self'"
    assert page.headers["X-Frame-Options"] == "DENY"


def test_explorer_policy_hashes_each_inline_script_and_nothing_else() -> None:
    html = '<script src="https://unpkg.com/x.js"></script><script>a()</script><script>\nb()\n</script>'
    policy = explorer_policy(html)
    for script in ("a()", "\nb()\n"):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert policy.count("'sha256-") == 2
    assert "'unsafe-eval'" not in policy and "frame-ancestors 'none'" in policy


def test_the_development_server_names_no_version() -> None:
    assert QuietRequestHandler.version_string(None) == "NoteBook"  # type: ignore[arg-type]
