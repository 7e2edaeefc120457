"""Tampered, forged and misused tokens are refused with UNAUTHENTICATED and logged without the token.

The app here signs with a secret of its own, as a deployment does; every secret-looking string
that appears in the repository is then tried as a signing key, and must not work.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest

from config import settings
from config.settings import Config
from notebook.utils.logging import JsonFormatter
from tests.conftest import GraphQL
from tests.unit.test_auth_service import SECRET

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
ME = "{ me { id } }"
NOTEBOOKS = "{ notebooks { id } }"
REFRESH = "mutation($token: String!) { refreshToken(refreshToken: $token) { accessToken } }"
REFRESH_PAIR = "mutation($token: String!) { refreshToken(refreshToken: $token) { refreshToken } }"
# quoted strings in settings and docs; `NAME=value` lines of .env.example
_QUOTED = re.compile(r"""["'`]([^"'`\s]{8,200})["'`]""")
_ENV_VALUE = re.compile(r"^\s*#?\s*[A-Z][A-Z0-9_]*=(\S{8,})\s*$", re.MULTILINE)
# in code and tests: string literals assigned to secret-looking names (SECRET = "...", password="...")
_ASSIGNED = re.compile(
    r"""(?i)\b\w*(?:secret|password|passwd|token|key)\w*\s*(?::\s*\w+\s*)?[=:]\s*(?:["'])([^"'\n]{8,200})["']"""
)


def repository_secrets() -> set[str]:
    """Every string in the repository that someone might have used, or copied, as SECRET_KEY."""
    found: set[str] = set()
    for path in [PROJECT_ROOT / "config" / "settings.py", PROJECT_ROOT / "README.md"]:
        found |= set(_QUOTED.findall(path.read_text()))
    for path in sorted((PROJECT_ROOT / "docs").glob("*.md")):
        found |= set(_QUOTED.findall(path.read_text()))
    env_example = ENV_EXAMPLE.read_text()
    found |= set(_ENV_VALUE.findall(env_example)) | set(_QUOTED.findall(env_example))
    for folder in ("config", "src", "tests", "scripts"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            found |= set(_ASSIGNED.findall(path.read_text()))
    return found


class SecurityLog(logging.Handler):
    """The lines the security logger writes, formatted as they would reach the log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def events(self) -> list[str]:
        return [json.loads(line).get("event", "") for line in self.lines]


@pytest.fixture
def own_secret_config(config: Config) -> Config:
    return replace(config, secret_key=secrets.token_urlsafe(48))


@pytest.fixture
def app_gql(own_secret_config: Config) -> Iterator[GraphQL]:
    from notebook.api.app import create_app

    app = create_app(own_secret_config)
    yield GraphQL(app.test_client())
    app.extensions["notebook"].close()


@pytest.fixture
def security_log() -> Iterator[SecurityLog]:
    handler = SecurityLog()
    logger = logging.getLogger("notebook.security")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "exp": now + 900, "typ": "access", **changes}


def _assert_refused_and_logged(gql: GraphQL, log: SecurityLog, token: str) -> None:
    for query in (ME, NOTEBOOKS):
        before = len(log.lines)
        body = gql(query, token=token)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (query, body)
        data = body.get("data") or {}
        assert not data.get("me") and not data.get("notebooks"), body
        new_lines = log.lines[before:]
        assert any(json.loads(line)["event"] == "token_refused" for line in new_lines), new_lines
        for line in new_lines:
            assert token not in line
            for part in token.split("."):
                assert len(part) < 8 or part not in line


def test_the_scan_finds_the_repository_secrets() -> None:
    found = repository_secrets()
    # the literals a careless deployment would copy, wherever they are today
    expected = {SECRET}
    default = getattr(settings, "DEFAULT_SECRET_KEY", None)
    if default:
        expected.add(default)
    for _name, value in re.findall(
        r"^([A-Z_]*(?:SECRET|PASSWORD)[A-Z_]*)=(\S+)$", ENV_EXAMPLE.read_text(), re.M
    ):
        if len(value) >= 8:
            expected.add(value)
    assert expected <= found
    assert len(found) >= 20


def test_tokens_signed_with_any_repository_string_are_refused(
    app_gql: GraphQL, own_secret_config: Config, security_log: SecurityLog
) -> None:
    user_id = app_gql.register()["user"]["id"]
    candidates = sorted(repository_secrets() - {own_secret_config.secret_key})
    refused = 0
    for candidate in candidates:
        token = jwt.encode(_claims(user_id), candidate, algorithm="HS256")
        body = app_gql(ME, token=token)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", candidate
        refused += 1
    assert refused == len(candidates) >= 20
    assert security_log.events().count("token_refused") == refused
    assert not any(
        candidate in line for line in security_log.lines for candidate in candidates if len(candidate) > 20
    )


def test_alg_none_and_other_algorithms(
    app_gql: GraphQL, own_secret_config: Config, security_log: SecurityLog
) -> None:
    user_id = app_gql.register()["user"]["id"]
    payload = _b64(_claims(user_id))
    for alg in ("none", "None", "NONE"):
        _assert_refused_and_logged(app_gql, security_log, f"{_b64({'alg': alg, 'typ': 'JWT'})}.{payload}.")
    # the right secret, but not the one algorithm the server accepts
    for alg in ("HS384", "HS512"):
        token = jwt.encode(_claims(user_id), own_secret_config.secret_key, algorithm=alg)
        _assert_refused_and_logged(app_gql, security_log, token)


def test_wrong_key_tampered_payload_and_expired(
    app_gql: GraphQL, own_secret_config: Config, security_log: SecurityLog
) -> None:
    ada = app_gql.register()
    bob = app_gql.register()
    secret = own_secret_config.secret_key
    _assert_refused_and_logged(
        app_gql, security_log, jwt.encode(_claims(ada["user"]["id"]), secrets.token_hex(32))
    )
    header, _, signature = ada["accessToken"].split(".")
    _assert_refused_and_logged(
        app_gql, security_log, f"{header}.{_b64(_claims(bob['user']['id']))}.{signature}"
    )
    expired = _claims(ada["user"]["id"], iat=int(time.time()) - 3600, exp=int(time.time()) - 60)
    _assert_refused_and_logged(app_gql, security_log, jwt.encode(expired, secret, algorithm="HS256"))
    no_expiry = {k: v for k, v in _claims(ada["user"]["id"]).items() if k != "exp"}
    _assert_refused_and_logged(app_gql, security_log, jwt.encode(no_expiry, secret, algorithm="HS256"))
    # the real token still works: the refusals above are about the tokens, not the account
    assert app_gql.data(ME, token=ada["accessToken"])["me"]["id"] == ada["user"]["id"]


def test_wrong_token_types(app_gql: GraphQL, own_secret_config: Config, security_log: SecurityLog) -> None:
    account = app_gql.register()
    user_id = account["user"]["id"]
    # a JWT that says it is a refresh token, correctly signed, is no access token
    as_refresh = jwt.encode(_claims(user_id, typ="refresh"), own_secret_config.secret_key, algorithm="HS256")
    _assert_refused_and_logged(app_gql, security_log, as_refresh)
    # the opaque refresh token is no access token
    _assert_refused_and_logged(app_gql, security_log, account["refreshToken"])
    # and an access token is no refresh token
    before = len(security_log.lines)
    assert app_gql.error_code(REFRESH, {"token": account["accessToken"]}) == "UNAUTHENTICATED"
    new_lines = security_log.lines[before:]
    assert [json.loads(line)["event"] for line in new_lines] == ["refresh_invalid"]
    assert account["accessToken"] not in new_lines[0]
    # the refresh token was not consumed by any of this
    assert app_gql.data(REFRESH, {"token": account["refreshToken"]})["refreshToken"]["accessToken"]


def test_refresh_reuse_is_refused_and_logged(app_gql: GraphQL, security_log: SecurityLog) -> None:
    account = app_gql.register()
    first = account["refreshToken"]
    second = app_gql.data(REFRESH_PAIR, {"token": first})["refreshToken"]["refreshToken"]
    before = len(security_log.lines)
    assert app_gql.error_code(REFRESH, {"token": first}) == "UNAUTHENTICATED"
    new_lines = security_log.lines[before:]
    assert [json.loads(line)["event"] for line in new_lines] == ["refresh_reuse"]
    assert json.loads(new_lines[0])["user_id"] == account["user"]["id"]
    assert first not in new_lines[0] and second not in new_lines[0]
    # the whole family is gone: the newer token too
    assert app_gql.error_code(REFRESH, {"token": second}) == "UNAUTHENTICATED"
