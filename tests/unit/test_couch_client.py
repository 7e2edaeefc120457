"""notebook.database.couch.client: request routing, retries, pinned requests, credentials."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from notebook.core.errors import ServiceUnavailable
from notebook.database.couch import CouchDBClient, DatabaseUnavailable
from notebook.database.couch import client as client_module
from tests.unit.couch_fake import PASSWORD, FakeCluster, active, wait_for

# -- routing -----------------------------------------------------------------------------------


def test_requests_go_to_the_preferred_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    db = client.database("notes")
    rev = db.put({"_id": "note:1", "title": "a"})
    assert db.get("note:1")["_rev"] == rev
    assert cluster[0].sent("PUT") == ["notes/note:1"]
    assert cluster[1].log == [] and cluster[2].log == []
    assert active(client) == cluster[0].url
    assert [n["active"] for n in client.nodes_status()] == [True, False, False]


def test_connect_error_is_retried_on_the_next_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[0].down = True
    assert client.server_info()["version"] == "3.4.3"
    assert client.served_by == cluster[1].url
    assert active(client) == cluster[1].url
    status = client.nodes_status()
    assert status[0]["circuit_open"] and not status[0]["healthy"]
    assert client.stats()["failovers"] == 1


def test_server_error_on_a_read_is_retried_on_the_next_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[1].put_doc("notes", {"_id": "note:1", "title": "a"})
    cluster[0].fail_next("GET", "note:1", "500")
    assert client.database("notes").get("note:1")["title"] == "a"
    assert client.served_by == cluster[1].url
    # one 5xx does not open the circuit: the preferred node stays active
    assert not client.nodes_status()[0]["circuit_open"]
    assert active(client) == cluster[0].url


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("_all_docs", lambda db: db.all_docs(["note:1"])),
        ("_find", lambda db: db.find({"type": "note"}, limit=5)),
    ],
)
def test_idempotent_posts_are_simply_retried(
    cluster: FakeCluster, make_client: Any, endpoint: str, call: Callable[[Any], Any]
) -> None:
    client = make_client()
    cluster[0].fail_next("POST", endpoint, "reset_after_apply")
    call(client.database("notes"))
    assert cluster[1].sent("POST", endpoint) == [f"notes/{endpoint}"]
    assert client.stats()["writes_verified"] == 0


def test_repeated_server_errors_open_the_circuit(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(failure_threshold=3, probe_interval=60.0)
    client.start_health_monitor()
    # a probe that succeeds between the failures would reset their count: let the first round
    # finish, and the next is a minute away (this failed in CI on a loaded machine)
    assert wait_for(lambda: all(s["last_checked"] for s in client.nodes_status()))
    for _ in range(3):
        cluster[0].fail_next("GET", "", "500")
        client.server_info()
    assert client.nodes_status()[0]["circuit_open"]
    assert active(client) == cluster[1].url


def test_server_errors_everywhere_leave_one_node_in_rotation(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(failure_threshold=1, probe_interval=60.0)
    client.start_health_monitor()
    assert wait_for(lambda: all(s["last_checked"] for s in client.nodes_status()))
    for node in cluster.nodes:
        node.fail_next("GET", "", "500")
    with pytest.raises(DatabaseUnavailable):
        client.server_info()  # a request every node fails: probably the request, not the nodes
    assert [s["circuit_open"] for s in client.nodes_status()] == [True, True, False]
    assert client.server_info()["version"] == "3.4.3"


def test_circuit_open_skips_a_dead_node(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    cluster[0].down = True
    client.check_nodes()  # the probe finds node 0 dead
    assert client.nodes_status()[0]["circuit_open"]
    attempts_before = len(cluster[0].log)
    cluster[0].down = False  # it would answer now, but nothing is sent until a probe says so
    for _ in range(5):
        client.server_info()
    assert len(cluster[0].log) == attempts_before
    assert client.served_by != cluster[0].url


def test_nothing_can_serve_raises_database_unavailable_without_waiting(
    cluster: FakeCluster, make_client: Any
) -> None:
    client = make_client()
    client.start_health_monitor()
    for node in cluster.nodes:
        node.down = True
    client.check_nodes()
    before = [len(node.log) for node in cluster.nodes]
    with pytest.raises(DatabaseUnavailable) as caught:
        client.database("notes").get("note:1")
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    # every circuit is open: the request fails at once, without touching the network
    assert [len(node.log) for node in cluster.nodes] == before


def test_retry_budget_bounds_attempts(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client(max_attempts=2)
    for node in cluster.nodes:
        node.fail_next("GET", "", "500")
    with pytest.raises(DatabaseUnavailable):
        client.server_info()
    assert [len(node.faults) for node in cluster.nodes] == [0, 0, 1]  # the third node never asked


def test_retry_deadline_bounds_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1000.0}
    monkeypatch.setattr(client_module.time, "monotonic", lambda: clock["now"])
    calls: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        clock["now"] += 5.0  # each node takes five seconds, then times out
        raise httpx.ReadTimeout("timed out", request=request)

    urls = [f"http://s{i}.test:5984/" for i in range(6)]
    client = CouchDBClient(urls, transport=httpx.MockTransport(slow), max_attempts=10, deadline=12.0)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            client.server_info()
    finally:
        client.close()
    assert len(calls) == 3  # at 0, 5 and 10 seconds; at 15 the deadline has passed
    assert "deadline" in caught.value.reason


# -- credentials -------------------------------------------------------------------------------


def test_credentials_never_appear_in_errors_logs_or_status(
    cluster: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    seen_auth: list[str] = []

    def dispatch(request: httpx.Request) -> httpx.Response:
        seen_auth.append(request.headers.get("Authorization", ""))
        return cluster._dispatch(request)

    client = CouchDBClient(
        cluster.urls(credentials=True),
        user="admin",
        password=PASSWORD,
        transport=httpx.MockTransport(dispatch),
        probe_interval=0.0,
    )
    messages: list[str] = []
    with caplog.at_level(logging.DEBUG):
        try:
            db = client.database("notes")
            db.put({"_id": "note:1", "title": "a"})
            cluster[0].down = True
            client.check_nodes()
            cluster[1].fail_next("PUT", "note:2", "reset_after_apply")
            db.put({"_id": "note:2", "title": "b"})
            for node in cluster.nodes:
                node.down = True
            client.check_nodes()
            for call in (
                lambda: db.get("note:1"),
                lambda: db.put({"_id": "note:3"}),
                lambda: client.request("POST", "notes", body={}),
            ):
                with pytest.raises(DatabaseUnavailable) as caught:
                    call()
                messages += [str(caught.value), caught.value.reason, caught.value.message, repr(caught.value)]
            messages.append(json.dumps(client.nodes_status()))
            messages += [client.url, client.active_url, *client.urls]
        finally:
            client.close()
    assert seen_auth and all(header.startswith("Basic ") for header in seen_auth)
    logged = [record.getMessage() + json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert any("circuit open" in text for text in logged)
    for text in messages + logged:
        assert PASSWORD not in text
        assert "admin:" not in text


def test_a_very_short_password_does_not_garble_messages(cluster: FakeCluster) -> None:
    client = CouchDBClient(
        cluster.urls(), user="admin", password="p", transport=httpx.MockTransport(cluster._dispatch)
    )
    try:
        for node in cluster.nodes:
            node.down = True
        with pytest.raises(DatabaseUnavailable) as caught:
            client.database("notes").get("note:1")
        assert "http://" in caught.value.reason
    finally:
        client.close()


# -- pinned requests -----------------------------------------------------------------------------


def test_a_request_pinned_to_a_node_never_goes_elsewhere(cluster: FakeCluster, make_client: Any) -> None:
    client = make_client()
    db = client.database("notes")
    position = db.changes(since="now", node=cluster[0].url)["last_seq"]
    cluster[0].down = True
    with pytest.raises(DatabaseUnavailable):
        db.changes(since=position, node=cluster[0].url)
    assert cluster[1].sent("GET", "_changes") == [] and cluster[2].sent("GET", "_changes") == []
    with pytest.raises(ValueError):
        db.changes(since="now", node="http://elsewhere.test:5984/")
