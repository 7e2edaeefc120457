"""notebook.database.couch.server_differences: each difference's rule, on both servers' answers."""

from __future__ import annotations

import base64

import pytest

from notebook.database.couch.server_differences import (
    bulk_answers_by_id,
    cluster_identity,
    fields_we_wrote,
    in_leaf_history,
    replicator_endpoint,
    scheduler_absent,
    up_verdict,
    written_fields_match,
)


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"status": "ok", "seeds": {}}, True),  # CouchDB 3 serving
        (404, {"status": "maintenance_mode"}, False),  # CouchDB 3 drained by an operator
        (404, {"status": "nolb"}, False),
        (503, None, False),
        (404, {"error": "not_found", "reason": "no_db_file"}, None),  # pouchdb-server: no /_up
    ],
)
def test_up_answers(status: int, body: object, verdict: bool | None) -> None:
    assert up_verdict(status, body) is verdict


@pytest.mark.parametrize(
    ("status", "absent"), [(404, True), (401, True), (403, True), (200, False), (500, False)]
)
def test_scheduler_detection_takes_refusals_as_absent(status: int, absent: bool) -> None:
    assert scheduler_absent(status) is absent


def test_a_document_is_recognised_by_the_fields_we_wrote_not_by_what_the_server_added() -> None:
    written = {"_id": "job", "source": {"url": "a"}, "target": {"url": "b"}, "continuous": True}
    stored = {**written, "_rev": "1-x", "owner": "admin", "_replication_state": "triggered"}
    assert written_fields_match(written, stored)
    assert not written_fields_match(written, {**stored, "continuous": False})
    assert fields_we_wrote(stored) == {"source": {"url": "a"}, "target": {"url": "b"}, "continuous": True}


def test_only_a_membership_of_several_nodes_is_a_cluster() -> None:
    three = {"all_nodes": ["a@h", "b@h", "c@h"], "cluster_nodes": ["c@h", "a@h", "b@h"]}
    assert cluster_identity(three) == frozenset({"a@h", "b@h", "c@h"})
    # pouchdb-server answers the same single node on every server; a single CouchDB node too
    assert cluster_identity({"all_nodes": ["node1@127.0.0.1"], "cluster_nodes": ["node1@127.0.0.1"]}) is None
    assert cluster_identity({"error": "not_found"}) is None
    assert cluster_identity(None) is None


def test_revs_diff_reports_are_checked_against_leaf_histories() -> None:
    answer = [{"ok": {"_id": "d", "_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}}}]
    assert in_leaf_history(answer, "2-b")
    assert not in_leaf_history(answer, "2-z")
    assert not in_leaf_history([{"missing": "1-a"}], "1-a")


def test_replicator_endpoints_carry_credentials_in_headers() -> None:
    token = base64.b64encode(b"app:pw").decode()
    assert replicator_endpoint("http://h/db", "app", "pw") == {
        "url": "http://h/db",
        "headers": {"Authorization": f"Basic {token}"},
    }
    assert replicator_endpoint("http://h/db", "", "") == {"url": "http://h/db", "headers": {}}


def test_bulk_answers_are_matched_by_id() -> None:
    answers = bulk_answers_by_id([{"id": "b", "rev": "1-b"}, {"id": "a", "rev": "1-a"}, "junk"])
    assert answers["a"]["rev"] == "1-a" and answers["b"]["rev"] == "1-b"
