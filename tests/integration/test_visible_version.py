"""The visible version of a note never goes backwards when a partition leaves versions that
cannot be merged: every node shows the latest acknowledged write (by hybrid logical clock), not
CouchDB's deterministic winner, and the other version stays in `Note.conflicts`.

Two nodes replicate through cuttable proxies (tests/support/cluster.py). During a cut, node A
edits the middle paragraph twice and then node B edits it once. B's edit is the later write, but
A's branch is longer, so CouchDB's winner rule (longest branch first, then revision hash) picks
A's on every node: the test makes the time order and CouchDB's order disagree by construction,
and checks that they do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import PartitionableCluster, partitionable_cluster
from tests.support.waiting import wait_for

BASE = "Intro paragraph.\n\nMiddle paragraph.\n\nClosing paragraph."
A1 = BASE.replace("Middle paragraph.", "Middle rewritten on A, first.")
A2 = BASE.replace("Middle paragraph.", "Middle rewritten on A, second.")
B1 = BASE.replace("Middle paragraph.", "Middle rewritten on B, after A.")
# the order in which the contents were acknowledged: a reader must never go down this list
ORDER = {BASE: 0, A1: 1, A2: 2, B1: 3}
NOTE = "id content version notebook { id } revisions { content reason } conflicts { version content }"
CONVERGE_SECONDS = 90


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionableCluster]:
    with partitionable_cluster(tmp_path_factory.mktemp("visible"), 2) as built:
        yield built


def read(cluster: PartitionableCluster, node: int, token: str, note_id: str) -> dict[str, Any]:
    return cluster.gql[node].data(
        f"query($id: ID!) {{ note(id: $id) {{ {NOTE} }} }}", {"id": note_id}, token
    )["note"]


def edit(cluster: PartitionableCluster, node: int, token: str, note: dict, content: str) -> dict:
    return cluster.gql[node].data(
        f"""mutation($id: ID!, $c: String!, $v: String!) {{
              updateNote(id: $id, input: {{content: $c}}, version: $v) {{ {NOTE} }} }}""",
        {"id": note["id"], "c": content, "v": note["version"]},
        token,
    )["updateNote"]


def read_cost(cluster: PartitionableCluster, token: str, note_id: str) -> int:
    """Database requests node A's app makes to answer note(id) { id content version }."""
    counter = cluster.apps[0].extensions["notebook"].couch.requests
    query = "query($id: ID!) { note(id: $id) { id content version } }"
    cluster.gql[0].data(query, {"id": note_id}, token)  # caches and views warm
    before = counter.total
    cluster.gql[0].data(query, {"id": note_id}, token)
    return int(counter.total - before)


def listed(cluster: PartitionableCluster, node: int, token: str, note_id: str) -> dict[str, Any]:
    """The note as the listing and the search show it."""
    found = {}
    for search in (None, "middle"):
        edges = cluster.gql[node].data(
            "query($s: String) { notes(first: 50, search: $s) { edges { node { id content version } } } }",
            {"s": search},
            token,
        )["notes"]["edges"]
        found[search] = next(edge["node"] for edge in edges if edge["node"]["id"] == note_id)
    assert found[None] == found["middle"], found
    return found[None]


def shared_note(cluster: PartitionableCluster) -> tuple[str, dict]:
    user = cluster.gql[0].register()
    note = cluster.gql[0].data(
        f'mutation($c: String!) {{ createNote(input: {{title: "Plan", content: $c}}) {{ {NOTE} }} }}',
        {"c": BASE},
        user["token"],
    )["createNote"]
    wait_for(
        lambda: all(
            (cluster.doc_on(n, note["id"]) or {}).get("_rev") == note["version"]
            and cluster.doc_on(n, note["notebook"]["id"])
            and cluster.doc_on(n, user["user"]["id"], "users")
            for n in range(2)
        ),
        30,
        "the user, the note and its notebook on both nodes",
    )
    return user["token"], note


def test_the_later_write_stays_visible_after_unmergeable_edits_on_two_nodes(
    cluster: PartitionableCluster,
) -> None:
    token, note = shared_note(cluster)
    seen: list[list[str]] = [[], []]  # every content each node's client was shown, in order

    def look(node: int) -> dict[str, Any]:
        shown = read(cluster, node, token, note["id"])
        seen[node].append(shown["content"])
        return shown

    cluster.cut()
    try:
        a1 = edit(cluster, 0, token, note, A1)
        a2 = edit(cluster, 0, token, a1, A2)
        b1 = edit(cluster, 1, token, note, B1)  # after both of A's, on a node that never saw them
        time.sleep(1.0)  # long enough for replication to carry them, were it running
        assert look(0)["content"] == A2 and look(1)["content"] == B1
        assert (cluster.doc_on(1, note["id"]) or {}).get("_rev") == b1["version"]  # the cut holds
    finally:
        cluster.heal()

    def converged() -> bool:
        cluster.settle()  # the resolver must leave overlapping edits for a person
        docs = [cluster.doc_on(n, note["id"]) or {} for n in range(2)]
        shown = [look(n) for n in range(2)]
        return all(len(doc.get("_conflicts", [])) == 1 for doc in docs) and all(
            s["content"] == B1 and [c["content"] for c in s["conflicts"]] == [A2] for s in shown
        )

    wait_for(converged, CONVERGE_SECONDS, "B's later edit shown on both nodes, A's in conflicts")
    for _ in range(3):  # and it stays so, resolver rounds included
        cluster.settle()
        converged()

    # CouchDB's own winner is A's older version on every node: the rule above is what shows B's
    for n in range(2):
        doc = cluster.doc_on(n, note["id"]) or {}
        assert doc["_rev"] == a2["version"] and doc["content"] == A2
        assert doc["_conflicts"] == [b1["version"]]

    # no client went back to an older acknowledged version, during the heal or after it
    for node, contents in enumerate(seen):
        ranks = [ORDER[content] for content in contents]
        assert ranks == sorted(ranks), (node, ranks)
        assert ranks[-1] == ORDER[B1]

    for n in range(2):
        shown = read(cluster, n, token, note["id"])
        assert shown["version"] == b1["version"]
        # the listing and the search show the same version as note(id)
        assert listed(cluster, n, token, note["id"]) == {
            "id": note["id"],
            "content": B1,
            "version": b1["version"],
        }
        # A's first edit, acknowledged and then replaced, is in the revisions
        wait_for(
            lambda n=n: (
                {BASE, A1} <= {r["content"] for r in read(cluster, n, token, note["id"])["revisions"]}
            ),
            CONVERGE_SECONDS,
            "the replaced versions in the note's revisions",
        )

    # only a conflicted note pays for the rule: one request more (its other leaves) each time it
    # is read, and note(id) reads it twice (the permission check, then the answer)
    plain = cluster.gql[0].data(
        'mutation { createNote(input: {title: "Plain", content: "no conflict"}) { id } }', token=token
    )["createNote"]["id"]
    costs = {
        name: read_cost(cluster, token, note_id)
        for name, note_id in (("plain", plain), ("conflicted", note["id"]))
    }
    print({"note_query_requests": costs})
    assert costs["conflicted"] == costs["plain"] + 2, costs

    # the version shown is the one to edit: the write extends B's leaf, A's stays in conflicts
    final = B1.replace("Closing paragraph.", "Closing paragraph, edited after the heal.")
    edited = edit(cluster, 0, token, read(cluster, 0, token, note["id"]), final)
    assert edited["content"] == final and [c["content"] for c in edited["conflicts"]] == [A2]
    assert read(cluster, 0, token, note["id"])["content"] == final

    # a person keeps A's version: it becomes the note, and B's line is kept in the revisions
    settled = cluster.gql[0].data(
        f"""mutation($id: ID!, $keep: String!) {{
              resolveNoteConflict(id: $id, keepVersion: $keep) {{ {NOTE} }} }}""",
        {"id": note["id"], "keep": a2["version"]},
        token,
    )["resolveNoteConflict"]
    assert settled["content"] == A2 and settled["conflicts"] == []
    wait_for(
        lambda: all(
            (s := read(cluster, n, token, note["id"]))["content"] == A2 and s["conflicts"] == []
            for n in range(2)
        ),
        CONVERGE_SECONDS,
        "the person's choice on both nodes",
    )
    assert final in {r["content"] for r in read(cluster, 0, token, note["id"])["revisions"]}
