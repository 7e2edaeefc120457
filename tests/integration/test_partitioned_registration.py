"""One e-mail address registered on two nodes cut apart: after the heal both people still reach
their own data. The earlier account keeps the address; the later one signs in with its own
password, is told to confirm a new address, does so, and keeps its notes. An operator sees the
event in the log (docs/replication.md, "Uniqueness across partitions")."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from notebook.core.domain import email_claim_id
from tests.support.cluster import PartitionableCluster, partitionable_cluster
from tests.support.waiting import wait_for

EMAIL = "same@example.com"
FIRST_PASSWORD = "first person's password"
SECOND_PASSWORD = "second person's password"
CONVERGE_SECONDS = 90
AUTH = "accessToken emailConflict user { id email emailConflict }"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionableCluster]:
    with partitionable_cluster(tmp_path_factory.mktemp("registration"), 2) as built:
        yield built


def register(cluster: PartitionableCluster, node: int, password: str) -> dict[str, Any]:
    return cluster.gql[node].data(
        f"mutation($e: String!, $p: String!) {{ register(email: $e, password: $p) {{ {AUTH} }} }}",
        {"e": EMAIL, "p": password},
    )["register"]


def login(cluster: PartitionableCluster, node: int, email: str, password: str) -> dict[str, Any]:
    return cluster.gql[node](
        f"mutation($e: String!, $p: String!) {{ login(email: $e, password: $p) {{ {AUTH} }} }}",
        {"e": email, "p": password},
    )


def note_titles(cluster: PartitionableCluster, node: int, token: str) -> list[str]:
    edges = cluster.gql[node].data("{ notes(first: 50) { edges { node { title } } } }", token=token)["notes"][
        "edges"
    ]
    return sorted(edge["node"]["title"] for edge in edges)


def create_note(cluster: PartitionableCluster, node: int, token: str, title: str) -> None:
    cluster.gql[node].data(
        'mutation($t: String!) { createNote(input: {title: $t, content: "mine"}) { id } }',
        {"t": title},
        token,
    )


def test_both_people_keep_their_data_and_the_later_one_confirms_a_new_address(
    cluster: PartitionableCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cluster.cut()
    try:
        first = register(cluster, 0, FIRST_PASSWORD)
        create_note(cluster, 0, first["accessToken"], "first person's note")
        second = register(cluster, 1, SECOND_PASSWORD)  # later, on a node that cannot see the first
        create_note(cluster, 1, second["accessToken"], "second person's note")
        time.sleep(1.0)  # long enough for replication to carry them, were it running
        assert cluster.doc_on(1, first["user"]["id"], "users") is None  # the cut holds
    finally:
        cluster.heal()
    first_id, second_id = first["user"]["id"], second["user"]["id"]
    assert first_id != second_id and not first["emailConflict"] and not second["emailConflict"]

    claim = email_claim_id(EMAIL)
    wait_for(
        lambda: all(
            len((cluster.doc_on(n, claim, "users") or {}).get("_conflicts", [])) == 1
            and cluster.doc_on(n, first_id, "users")
            and cluster.doc_on(n, second_id, "users")
            for n in range(2)
        ),
        CONVERGE_SECONDS,
        "both claims of the address and both accounts on both nodes",
    )
    # before any resolver ran, sign-in already applies the rule, whichever claim CouchDB shows
    shown = {(cluster.doc_on(n, claim, "users") or {}).get("user_id") for n in range(2)}
    print({"couchdb_winner_is_the_later_claim": shown == {second_id}})
    for node in range(2):
        early = login(cluster, node, EMAIL, FIRST_PASSWORD)["data"]["login"]
        assert early["user"]["id"] == first_id and early["emailConflict"] is False
        late = login(cluster, node, EMAIL, SECOND_PASSWORD)["data"]["login"]
        assert late["user"]["id"] == second_id and late["emailConflict"] is True

    def settled() -> bool:
        cluster.settle()
        claims = [cluster.doc_on(n, claim, "users") or {} for n in range(2)]
        accounts = [cluster.doc_on(n, second_id, "users") or {} for n in range(2)]
        return all(
            c.get("user_id") == first_id and c.get("displaced") == [second_id] and "_conflicts" not in c
            for c in claims
        ) and all(a.get("email_conflict") for a in accounts)

    wait_for(settled, CONVERGE_SECONDS, "the claim settled for the first account on both nodes")
    events = [r for r in caplog.records if getattr(r, "event", None) == "email_conflict"]
    assert events and events[0].user_id == first_id and events[0].displaced == [second_id]
    assert all(EMAIL not in r.getMessage() and EMAIL not in str(vars(r)) for r in events)

    for node in range(2):
        # the first person signs in as before, and sees their note only
        mine = login(cluster, node, EMAIL, FIRST_PASSWORD)["data"]["login"]
        assert mine["user"]["id"] == first_id and mine["emailConflict"] is False
        wait_for(  # the notes replicate on their own time, after the accounts
            lambda n=node, t=mine["accessToken"]: note_titles(cluster, n, t) == ["first person's note"],
            CONVERGE_SECONDS,
            "first person's note on node",
        )
        # the second person's own password is accepted: their account, flagged, their note only
        theirs = login(cluster, node, EMAIL, SECOND_PASSWORD)["data"]["login"]
        assert theirs["user"]["id"] == second_id
        assert theirs["emailConflict"] is True and theirs["user"]["emailConflict"] is True
        wait_for(  # the notes replicate on their own time, after the accounts
            lambda n=node, t=theirs["accessToken"]: note_titles(cluster, n, t) == ["second person's note"],
            CONVERGE_SECONDS,
            "second person's note on node",
        )
    # (failed logins count against the address: the test keeps them under the limit of 5)
    assert (
        login(cluster, 0, EMAIL, "neither password")["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    )
    logins = [r for r in caplog.records if getattr(r, "event", None) == "email_conflict_login"]
    assert {r.user_id for r in logins} == {second_id}

    # the address is taken: the second person must choose another one
    token = theirs["accessToken"]
    confirm = "mutation($e: String!) { confirmNewEmail(email: $e) { id email emailConflict } }"
    refused = cluster.gql[1](confirm, {"e": EMAIL}, token)["errors"][0]
    assert refused["extensions"]["code"] == "BAD_USER_INPUT" and refused["extensions"]["field"] == "email"
    moved = cluster.gql[1].data(confirm, {"e": "second@example.com"}, token)["confirmNewEmail"]
    assert moved == {"id": second_id, "email": "second@example.com", "emailConflict": False}
    # the first person has nothing to confirm
    mine = login(cluster, 1, EMAIL, FIRST_PASSWORD)["data"]["login"]
    assert cluster.gql[1](confirm, {"e": "third@example.com"}, mine["accessToken"])["errors"][0][
        "extensions"
    ]["code"] == ("BAD_USER_INPUT")

    def moved_everywhere() -> bool:
        for node in range(2):
            account = cluster.doc_on(node, second_id, "users") or {}
            if account.get("email") != "second@example.com" or account.get("email_conflict"):
                return False
        return True

    wait_for(moved_everywhere, CONVERGE_SECONDS, "the second person's new address on both nodes")
    for node in range(2):
        # the old address no longer signs the second person in
        refused = login(cluster, node, EMAIL, SECOND_PASSWORD)["errors"][0]
        assert refused["extensions"]["code"] == "UNAUTHENTICATED"
        body = login(cluster, node, "second@example.com", SECOND_PASSWORD)["data"]["login"]
        assert body["emailConflict"] is False
        wait_for(  # the notes replicate on their own time, after the accounts
            lambda n=node, t=body["accessToken"]: note_titles(cluster, n, t) == ["second person's note"],
            CONVERGE_SECONDS,
            "second person's note on node",
        )
        mine = login(cluster, node, EMAIL, FIRST_PASSWORD)["data"]["login"]
        assert mine["user"]["id"] == first_id
        wait_for(  # the notes replicate on their own time, after the accounts
            lambda n=node, t=mine["accessToken"]: note_titles(cluster, n, t) == ["first person's note"],
            CONVERGE_SECONDS,
            "first person's note on node",
        )


def test_the_earlier_claim_keeps_the_address_where_couchdb_picks_the_later_one(
    cluster: PartitionableCluster,
) -> None:
    """CouchDB's winner among competing claims depends on revision hashes: here the later
    claim is given the highest possible one (as replication would store it, new_edits=false)."""
    email, gql = "crafted@example.com", cluster.gql[0]
    early = register_as(gql, email, FIRST_PASSWORD)
    late = register_as(gql, "elsewhere@example.com", SECOND_PASSWORD)
    users = cluster.clients[0].database(cluster.names["users"])
    account = users.get(late["user"]["id"])
    users.put({**account, "email": email})  # as the other side of a partition registered it
    claim_id = email_claim_id(email)
    stored = users.get(claim_id)
    later = cluster.apps[0].extensions["notebook"].users.clock.now()
    crafted = {"_id": claim_id, "_rev": "1-" + "f" * 32, "type": "email_claim", "user_id": account["_id"]}
    users.bulk_docs([{**crafted, "created_at": account["created_at"], "hlc": later}], new_edits=False)
    winner = users.get(claim_id, conflicts=True)
    assert winner["user_id"] == late["user"]["id"] and winner["_conflicts"] == [stored["_rev"]]

    first = login(cluster, 0, email, FIRST_PASSWORD)["data"]["login"]
    assert first["user"]["id"] == early["user"]["id"] and first["emailConflict"] is False
    second = login(cluster, 0, email, SECOND_PASSWORD)["data"]["login"]
    assert second["user"]["id"] == late["user"]["id"] and second["emailConflict"] is True
    # sharing by address reaches the holder
    notebook = gql.data("{ notebooks { id } }", token=second["accessToken"])["notebooks"][0]["id"]
    shared = gql.data(
        "mutation($id: ID!, $e: String!) { shareNotebook(id: $id, email: $e, role: VIEWER) "
        "{ members { user { id } } } }",
        {"id": notebook, "e": email},
        second["accessToken"],
    )["shareNotebook"]
    assert {m["user"]["id"] for m in shared["members"]} == {early["user"]["id"], late["user"]["id"]}

    cluster.apps[0].extensions["notebook"].resolver.resolve_pending()
    settled = users.get(claim_id, conflicts=True)
    assert settled["user_id"] == early["user"]["id"] and settled["displaced"] == [late["user"]["id"]]
    assert "_conflicts" not in settled


def register_as(gql: Any, email: str, password: str) -> dict[str, Any]:
    return gql.data(
        f"mutation($e: String!, $p: String!) {{ register(email: $e, password: $p) {{ {AUTH} }} }}",
        {"e": email, "p": password},
    )["register"]
