"""Abuse limits over real HTTP, on two separate server processes sharing one database node.

The limits must hold in total, not per process: each test spreads its attempts over both
servers. Clients are told apart by their source address (127.0.0.1 and 127.0.0.2 are both
loopback) and, because the servers trust 127.0.0.1 as a proxy, by X-Forwarded-For.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.local_server import free_port
from tests.support.api_server import BIN, ServerProcess, clean_environment
from tests.support.servers import NodeSet

PASSWORD = "correct horse battery"
PER_ACCOUNT_IP = 3
PER_IP = 6
REGISTER_PER_IP = 3
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken user { id } } }"""
REGISTER = """mutation($email: String!, $password: String!) {
  register(email: $email, password: $password) { accessToken user { id } } }"""


class Client:
    """One client machine: its own source address, optionally behind the trusted proxy."""

    def __init__(self, source: str = "127.0.0.1", forwarded_for: str | None = None) -> None:
        self.http = httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

    def post(self, server: ServerProcess, query: str, variables: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            f"{server.url}/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )

    def call(self, server: ServerProcess, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self.post(server, query, variables).json()

    def code(self, server: ServerProcess, query: str, variables: dict[str, Any]) -> str | None:
        errors = self.call(server, query, variables).get("errors")
        return errors[0]["extensions"]["code"] if errors else None

    def close(self) -> None:
        self.http.close()


_HOSTS = itertools.count(1)


def _client_ip() -> str:
    """A fresh documentation address (RFC 5737) for one simulated client."""
    return f"203.0.113.{next(_HOSTS)}"


@pytest.fixture(scope="module")
def servers(couch_node: NodeSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    env = clean_environment(
        FLASK_ENV="testing",
        COUCHDB_URL=couch_node.urls[0],
        **couch_node.environment(),
        COUCHDB_DB_PREFIX=f"l{uuid.uuid4().hex[:10]}_",
        TRUSTED_PROXIES="127.0.0.1",
        LOGIN_FAILURES_PER_ACCOUNT_IP=str(PER_ACCOUNT_IP),
        LOGIN_FAILURES_PER_IP=str(PER_IP),
        REGISTER_PER_IP=str(REGISTER_PER_IP),
    )
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            logdir = tmp_path_factory.mktemp(f"server-{name}")
            port = free_port()
            server = ServerProcess(
                [str(BIN / "notebook-server"), "--port", str(port)], env, Path(logdir), logdir, port
            )
            started.append(server)
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def _register(servers: list[ServerProcess]) -> str:
    """A new account, registered from an address of its own."""
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    client = Client(forwarded_for=_client_ip())
    try:
        assert client.code(servers[0], REGISTER, {"email": email, "password": PASSWORD}) is None
    finally:
        client.close()
    return email


def test_login_failures_are_counted_across_both_processes(servers: list[ServerProcess]) -> None:
    email = _register(servers)
    attacker = Client(forwarded_for=_client_ip())
    owner = Client(forwarded_for=_client_ip())
    try:
        wrong = {"email": email, "password": "wrong password"}
        for attempt in range(PER_ACCOUNT_IP):
            assert attacker.code(servers[attempt % 2], LOGIN, wrong) == "UNAUTHENTICATED"
        # per process the attacker would have more tries left; in total it has none, anywhere
        for server in servers:
            response = attacker.post(server, LOGIN, {"email": email, "password": PASSWORD})
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert int(response.headers["Retry-After"]) == error["extensions"]["retryAfter"] > 0
        # meanwhile the owner logs in from elsewhere, on either server
        for server in servers:
            assert owner.code(server, LOGIN, {"email": email, "password": PASSWORD}) is None
    finally:
        attacker.close()
        owner.close()


def test_owner_logs_in_from_another_source_address(servers: list[ServerProcess]) -> None:
    """Without X-Forwarded-For: the attacker and the owner are told apart by their peer address."""
    email = _register(servers)
    attacker, owner = Client("127.0.0.1"), Client("127.0.0.2")
    try:
        for attempt in range(PER_ACCOUNT_IP):
            assert attacker.code(servers[attempt % 2], LOGIN, {"email": email, "password": "nope-nope"}) == (
                "UNAUTHENTICATED"
            )
        assert attacker.code(servers[1], LOGIN, {"email": email, "password": PASSWORD}) == "RATE_LIMITED"
        assert owner.code(servers[0], LOGIN, {"email": email, "password": PASSWORD}) is None
    finally:
        attacker.close()
        owner.close()


def test_one_address_trying_many_accounts_is_limited(servers: list[ServerProcess]) -> None:
    sprayer = Client(forwarded_for=_client_ip())
    try:
        for n in range(PER_IP):
            variables = {"email": f"guess-{n}-{uuid.uuid4().hex[:6]}@example.com", "password": PASSWORD}
            assert sprayer.code(servers[n % 2], LOGIN, variables) == "UNAUTHENTICATED"
        assert sprayer.code(servers[0], LOGIN, {"email": "another@example.com", "password": PASSWORD}) == (
            "RATE_LIMITED"
        )
    finally:
        sprayer.close()


def test_forwarded_for_is_ignored_from_an_untrusted_peer(servers: list[ServerProcess]) -> None:
    """127.0.0.2 is no trusted proxy: naming a new address in every request does not help it."""
    email = _register(servers)
    owner = Client(forwarded_for=_client_ip())
    try:
        for attempt in range(PER_ACCOUNT_IP):
            liar = Client("127.0.0.2", forwarded_for=_client_ip())
            try:
                assert liar.code(servers[attempt % 2], LOGIN, {"email": email, "password": "nope-nope"}) == (
                    "UNAUTHENTICATED"
                )
            finally:
                liar.close()
        liar = Client("127.0.0.2", forwarded_for=_client_ip())
        try:
            assert liar.code(servers[0], LOGIN, {"email": email, "password": PASSWORD}) == "RATE_LIMITED"
        finally:
            liar.close()
        assert owner.code(servers[1], LOGIN, {"email": email, "password": PASSWORD}) is None
    finally:
        owner.close()


def test_register_is_limited_per_address_across_processes_and_aliases(servers: list[ServerProcess]) -> None:
    client = Client(forwarded_for=_client_ip())
    try:
        # aliases in one request: each register call counts
        emails = [f"alias-{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(REGISTER_PER_IP + 2)]
        aliases = " ".join(
            f'r{n}: register(email: "{email}", password: "{PASSWORD}") {{ user {{ id }} }}'
            for n, email in enumerate(emails)
        )
        body = client.call(servers[0], f"mutation {{ {aliases} }}", {})
        # the refused call nulls the (non-null) mutation result and ends the request
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
            ([f"r{REGISTER_PER_IP}"], "RATE_LIMITED")
        ]
        checker = Client(forwarded_for=_client_ip())
        try:
            outcomes = [checker.code(servers[1], LOGIN, {"email": e, "password": PASSWORD}) for e in emails]
        finally:
            checker.close()
        assert outcomes == [None] * REGISTER_PER_IP + ["UNAUTHENTICATED"] * 2
        # and the other process refuses this address too
        email = f"late-{uuid.uuid4().hex[:6]}@example.com"
        assert client.code(servers[1], REGISTER, {"email": email, "password": PASSWORD}) == "RATE_LIMITED"
    finally:
        client.close()
    other = Client(forwarded_for=_client_ip())
    try:
        email = f"other-{uuid.uuid4().hex[:6]}@example.com"
        assert other.code(servers[1], REGISTER, {"email": email, "password": PASSWORD}) is None
    finally:
        other.close()


def test_unknown_email_and_wrong_password_get_identical_answers(servers: list[ServerProcess]) -> None:
    email = _register(servers)
    client = Client(forwarded_for=_client_ip())
    try:
        wrong = client.post(servers[0], LOGIN, {"email": email, "password": "wrong password"})
        unknown = client.post(servers[0], LOGIN, {"email": f"x{email}", "password": "wrong password"})
        assert wrong.status_code == unknown.status_code
        assert wrong.json() == unknown.json()
        assert wrong.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    finally:
        client.close()
    for server in servers:
        assert email not in server.stderr() and PASSWORD not in server.stderr()
