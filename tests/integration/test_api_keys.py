"""API keys against a real server: shown once, stored hashed, scoped, revoked at once on every
instance, expiring, rate-limited when wrong, ended by a password change, recorded in activity."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import httpx

from config.settings import Config
from notebook.api.app import create_app
from tests.conftest import GraphQL, drop_databases
from tests.support.api_server import gunicorn_beside
from tests.support.servers import NodeSet

CREATE = """mutation($n: String!, $s: ApiKeyScope!, $d: Int) {
  createApiKey(name: $n, scope: $s, expiresInDays: $d) {
    secret apiKey { id name scope createdAt expiresAt lastUsedAt } } }"""
NOTES = "{ notes(first: 5) { totalCount } }"
LIST = "{ apiKeys { id name scope createdAt expiresAt lastUsedAt } }"


def make_key(gql: GraphQL, token: str, scope: str = "READ", days: int | None = None) -> dict:
    return gql.data(CREATE, {"n": f"script {scope}", "s": scope, "d": days}, token)["createApiKey"]


def test_a_key_is_shown_once_stored_hashed_listed_without_secret_and_works(app: Any, gql: GraphQL) -> None:
    user = gql.register()
    made = make_key(gql, user["token"], "WRITE", days=30)
    secret, key = made["secret"], made["apiKey"]
    assert secret.startswith("nbk_") and len(secret) > 50
    assert key["scope"] == "WRITE" and key["expiresAt"] > key["createdAt"] and key["lastUsedAt"] is None
    listed = gql(LIST, token=user["token"])
    assert listed["data"]["apiKeys"] == [key] and secret not in str(listed)
    raw = app.extensions["notebook"].databases.users.get(key["id"])
    assert secret not in str(raw) and raw["secret_hash"]
    # used as a Bearer token: it reads and writes notes as its owner
    created = gql.data('mutation { createNote(input: {title: "by script"}) { id } }', token=secret)
    assert gql.data(NOTES, token=secret)["notes"]["totalCount"] == 1
    assert gql.data(
        "query($id: ID!) { note(id: $id) { title } }", {"id": created["createNote"]["id"]}, user["token"]
    )
    used = gql.data(LIST, token=user["token"])["apiKeys"][0]
    assert used["lastUsedAt"] is not None
    # later uses within the hour write nothing
    rev = app.extensions["notebook"].databases.users.get(key["id"])["_rev"]
    for _ in range(5):
        gql.data(NOTES, token=secret)
    assert app.extensions["notebook"].databases.users.get(key["id"])["_rev"] == rev


def test_a_read_key_may_not_write_and_no_key_may_manage_the_account(gql: GraphQL) -> None:
    user = gql.register()
    read = make_key(gql, user["token"], "READ")["secret"]
    write = make_key(gql, user["token"], "WRITE")["secret"]
    assert gql.data(NOTES, token=read)["notes"]["totalCount"] == 0
    assert gql.error_code('mutation { createNote(input: {title: "x"}) { id } }', token=read) == "FORBIDDEN"
    for secret in (read, write):
        assert gql.error_code(LIST, token=secret) == "FORBIDDEN"
        assert (
            gql.error_code('mutation { createApiKey(name: "n", scope: WRITE) { secret } }', token=secret)
            == "FORBIDDEN"
        )
        assert gql.error_code("mutation { logoutEverywhere }", token=secret) == "FORBIDDEN"
        assert gql.error_code("{ systemStats { users } }", token=secret) == "FORBIDDEN"


def test_revoked_and_expired_keys_are_refused_and_a_second_instance_sees_the_revocation(
    app: Any, gql: GraphQL, config: Config
) -> None:
    other = create_app(config)  # a second app process on the same databases
    try:
        second = GraphQL(other.test_client())
        user = gql.register()
        made = make_key(gql, user["token"])
        assert second.data(NOTES, token=made["secret"])["notes"]["totalCount"] == 0
        assert gql.data(
            "mutation($id: ID!) { revokeApiKey(id: $id) }", {"id": made["apiKey"]["id"]}, user["token"]
        )
        assert second.error_code(NOTES, token=made["secret"]) == "UNAUTHENTICATED"  # the next request
        assert gql.data(LIST, token=user["token"])["apiKeys"] == []
        assert (
            gql.error_code(
                "mutation($id: ID!) { revokeApiKey(id: $id) }", {"id": made["apiKey"]["id"]}, user["token"]
            )
            == "NOT_FOUND"
        )
        # expiry: the stored expiry moved into the past
        expiring = make_key(gql, user["token"], days=1)
        users_db = app.extensions["notebook"].databases.users
        doc = users_db.get(expiring["apiKey"]["id"])
        users_db.put({**doc, "expires_at": "2000-01-01T00:00:00.000000Z"})
        answer = second(NOTES, token=expiring["secret"])
        assert (
            answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            and "expired" in answer["errors"][0]["message"]
        )
        assert (
            gql.error_code(
                'mutation { createApiKey(name: "x", scope: READ, expiresInDays: 0) { secret } }',
                token=user["token"],
            )
            == "BAD_USER_INPUT"
        )
    finally:
        other.extensions["notebook"].close()


def test_a_password_change_ends_every_key_and_deleting_the_account_removes_them(
    app: Any, gql: GraphQL
) -> None:
    user = gql.register(password="correct horse battery")
    secret = make_key(gql, user["token"])["secret"]
    changed = gql.data(
        'mutation { changePassword(currentPassword: "correct horse battery", '
        'newPassword: "another good passphrase") { accessToken } }',
        token=user["token"],
    )["changePassword"]
    assert gql.error_code(NOTES, token=secret) == "UNAUTHENTICATED"
    key = make_key(gql, changed["accessToken"])
    assert gql.data(
        'mutation { deleteAccount(password: "another good passphrase") }', token=changed["accessToken"]
    )
    assert app.extensions["notebook"].databases.users.get_or_none(key["apiKey"]["id"]) is None
    assert gql.error_code(NOTES, token=key["secret"]) == "UNAUTHENTICATED"


def test_wrong_keys_cost_the_caller_a_rate_limit(config: Config) -> None:
    limited = replace(config, login_failures_per_ip=3, db_prefix=f"k{uuid.uuid4().hex[:8]}_")
    app = create_app(limited)
    services = app.extensions["notebook"]
    try:
        gql = GraphQL(app.test_client())
        user = gql.register()
        good = make_key(gql, user["token"])["secret"]
        codes = [gql.error_code(NOTES, token=f"nbk_{uuid.uuid4().hex[:16]}_{'x' * 43}") for _ in range(5)]
        assert codes[:3] == ["UNAUTHENTICATED"] * 3 and codes[3:] == ["RATE_LIMITED"] * 2
        assert gql.error_code(NOTES, token=good) == "RATE_LIMITED"  # from this address, for now
    finally:
        services.stopping.set()
        drop_databases(services)
        services.close()


def test_keys_are_recorded_in_activity_when_created_first_used_and_revoked(gql: GraphQL) -> None:
    user = gql.register()
    made = make_key(gql, user["token"])
    gql.data(NOTES, token=made["secret"])
    gql.data(NOTES, token=made["secret"])
    gql.data("mutation($id: ID!) { revokeApiKey(id: $id) }", {"id": made["apiKey"]["id"]}, user["token"])
    feed = gql.data("{ activity(first: 20) { edges { node { action targetId } } } }", token=user["token"])
    actions = [
        e["node"]["action"]
        for e in feed["activity"]["edges"]
        if e["node"]["targetId"] == made["apiKey"]["id"]
    ]
    assert actions == ["api_key.revoked", "api_key.first_used", "api_key.created"]


def test_the_operators_rest_api_refuses_api_keys(app: Any, gql: GraphQL) -> None:
    admin = gql.register()
    app.extensions["notebook"].auth.set_admin(admin["user"]["email"])
    secret = make_key(gql, admin["token"], "WRITE")["secret"]
    client = app.test_client()
    answer = client.get("/api/replication/status", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 403 and answer.get_json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (
        client.get(
            "/api/replication/status", headers={"Authorization": f"Bearer {admin['token']}"}
        ).status_code
        == 200
    )


def test_a_revocation_is_refused_at_once_by_another_server_process(
    gql: GraphQL, config: Config, couch_node: NodeSet, tmp_path: Any
) -> None:
    """Another OS process (gunicorn, as in production) on the same databases: it takes the key,
    and refuses it at its next request after the revocation here."""
    server = gunicorn_beside(config, couch_node.environment(), tmp_path)
    try:
        server.wait_healthy()
        user = gql.register()
        made = make_key(gql, user["token"])

        def notes_there() -> dict:
            headers = {"Authorization": f"Bearer {made['secret']}"}
            return httpx.post(
                f"{server.url}/graphql", json={"query": NOTES}, headers=headers, timeout=30
            ).json()

        assert notes_there()["data"]["notes"]["totalCount"] == 0
        assert gql.data(
            "mutation($id: ID!) { revokeApiKey(id: $id) }", {"id": made["apiKey"]["id"]}, user["token"]
        )
        for _ in range(4):  # whichever worker answers
            assert notes_there()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        server.stop()
