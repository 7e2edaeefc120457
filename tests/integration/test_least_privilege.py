"""Least privilege on CouchDB 3: requests as a database member, set-up as a server admin.

docs/operations.md describes the accounts. On pouchdb-server (admin party, no enforced member
list for admins-less nodes) the question does not arise, so this runs on CouchDB 3 only.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Config
from notebook.database.design_docs import database_names
from tests.conftest import GraphQL
from tests.support.servers import NodeSet, _json_request
from tests.support.waiting import wait_until

pytestmark = pytest.mark.servers(
    "couchdb3",
    reason="pouchdb-server runs as an admin party (no accounts to check); on external nodes it "
    "would create CouchDB users",
)

CREATE = 'mutation { createNote(input: {title: "Member note", content: "written by a member"}) { id } }'
SEARCH = '{ notes(search: "member") { totalCount edges { node { title } } } }'


@dataclasses.dataclass
class Member:
    name: str
    password: str

    def request(self, nodes: NodeSet, method: str, path: str, body: Any = None) -> int:
        return _json_request(nodes[0].url + path, method, body, 10, self.name, self.password)[0]


@pytest.fixture
def member(couch_node: NodeSet) -> Iterator[Member]:
    """A plain CouchDB user (no roles, not an admin), created through `_users` by the admin."""
    made = Member(f"app-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
    doc_id = f"org.couchdb.user:{made.name}"
    status, body = couch_node[0].request(
        "PUT", f"_users/{doc_id}", {"name": made.name, "password": made.password, "roles": [], "type": "user"}
    )
    assert status in (201, 202), body
    assert wait_until(lambda: made.request(couch_node, "GET", "_session") == 200, 15)
    yield made
    status, current = couch_node[0].request("GET", f"_users/{doc_id}")
    if status == 200:
        couch_node[0].request("DELETE", f"_users/{doc_id}?rev={current['_rev']}")


def _split(config: Config, nodes: NodeSet, member: Member) -> Config:
    return dataclasses.replace(
        config,
        couchdb_user=member.name,
        couchdb_password=member.password,
        couchdb_admin_user=nodes.user,
        couchdb_admin_password=nodes.password,
    )


def _session(gql: GraphQL) -> list[str]:
    token = gql.register()["token"]
    gql.data(CREATE, token=token)
    found = gql.data(SEARCH, token=token)["notes"]
    return [edge["node"]["title"] for edge in found["edges"]]


def test_requests_run_as_a_database_member_and_only_set_up_as_admin(
    config: Config, couch_node: NodeSet, member: Member
) -> None:
    from notebook.api.app import create_app

    split = _split(config, couch_node, member)
    app = create_app(split)
    services = app.extensions["notebook"]
    try:
        assert services.warmup.state == "ready", services.warmup.status()
        assert services.couch.nodes_status()  # the request client is the member's
        assert _session(GraphQL(app.test_client())) == ["Member note"]
        for name in database_names(config.db_prefix).values():
            status, security = couch_node[0].request("GET", f"{name}/_security")
            assert status == 200 and member.name in security["members"]["names"], security
    finally:
        services.close()

    # the member really is not an admin: it can neither create a database nor change _security
    assert member.request(couch_node, "PUT", f"{config.db_prefix}extra") in (401, 403)
    notes_db = database_names(config.db_prefix)["notes"]
    promote = {"admins": {"names": [member.name], "roles": []}, "members": {"names": [], "roles": []}}
    before = couch_node[0].request("GET", f"{notes_db}/_security")[1]
    # CouchDB 3.4 refuses it per shard and answers 500 "no_majority" rather than 403
    assert member.request(couch_node, "PUT", f"{notes_db}/_security", promote) in (401, 403, 500)
    assert couch_node[0].request("GET", f"{notes_db}/_security")[1] == before
    assert member.request(couch_node, "PUT", f"{notes_db}/_design/x", {"views": {}}) in (401, 403)
    assert member.request(couch_node, "PUT", f"_replicator/{uuid.uuid4().hex}", {}) in (401, 403)

    # once an admin has set up, the member alone runs the app (no admin credentials at all)
    member_only = dataclasses.replace(split, couchdb_admin_user="", couchdb_admin_password="")
    again = create_app(member_only)
    try:
        assert again.extensions["notebook"].warmup.state == "ready"
        assert _session(GraphQL(again.test_client())) == ["Member note"]
    finally:
        again.extensions["notebook"].close()


def test_a_member_alone_cannot_set_up_new_databases(
    config: Config, couch_node: NodeSet, member: Member
) -> None:
    from notebook.api.app import create_app

    fresh = dataclasses.replace(
        config,
        couchdb_user=member.name,
        couchdb_password=member.password,
        db_prefix=f"m{uuid.uuid4().hex[:10]}_",
        startup_wait_seconds=30,
    )
    app = create_app(fresh)
    try:
        client = app.test_client()
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.get_json()["status"] == "unavailable"
        answer = client.post("/graphql", json={"query": "{ me { id } }"})
        assert answer.status_code == 503
        assert answer.get_json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert member.password not in ready.get_data(as_text=True) + answer.get_data(as_text=True)
    finally:
        app.extensions["notebook"].close()
    status, _ = couch_node[0].request("GET", database_names(fresh.db_prefix)["notes"])
    assert status == 404  # nothing was created
