"""A network partition between real replicating nodes: concurrent edits are merged, never lost.

Three nodes of the server under test replicate in a full mesh; each node receives replication through a
loopback TCP proxy (the mesh's `peer_urls`). Cutting the proxies partitions the nodes from each
other while every node keeps accepting writes through its own app.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import GraphQL
from tests.support.cluster import PartitionableCluster, partitionable_cluster
from tests.support.waiting import wait_for as wait_until

PARAGRAPHS = "Intro paragraph.\n\nMiddle paragraph.\n\nClosing paragraph."
NOTE = "id title content version notebook { id } revisions { content reason } conflicts { version content }"
CONVERGE_SECONDS = 90
# one merge round, plus one more where a node merged before every leaf had reached it
MAX_GENERATION = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionableCluster]:
    with partitionable_cluster(tmp_path_factory.mktemp("partition"), 3) as built:
        yield built


def edit(gql: GraphQL, token: str, note: dict, content: str) -> dict:
    return gql.data(
        f"""mutation($id: ID!, $c: String!, $v: String!) {{
              updateNote(id: $id, input: {{content: $c}}, version: $v) {{ {NOTE} }} }}""",
        {"id": note["id"], "c": content, "v": note["version"]},
        token,
    )["updateNote"]


def shared_note(cluster: PartitionableCluster) -> tuple[str, dict]:
    """A user and a note that every node has, with the notebook its permission check reads."""
    user = cluster.gql[0].register()
    note = cluster.gql[0].data(
        f'mutation($c: String!) {{ createNote(input: {{title: "Plan", content: $c}}) {{ {NOTE} }} }}',
        {"c": PARAGRAPHS},
        user["token"],
    )["createNote"]
    wait_until(
        lambda: all(
            (cluster.doc_on(n, note["id"]) or {}).get("_rev") == note["version"]
            and cluster.doc_on(n, note["notebook"]["id"])
            and cluster.doc_on(n, user["user"]["id"], "users")
            for n in range(3)
        ),
        30,
        "the user, the note and its notebook on every node",
    )
    return user["token"], note


def partitioned_edits(
    cluster: PartitionableCluster, token: str, note: dict, side_a: str, side_b: str
) -> tuple[dict, dict]:
    """Cut replication between the nodes, edit the same version on A and on B, then heal."""
    cluster.cut()
    try:
        edited_a = edit(cluster.gql[0], token, note, side_a)
        edited_b = edit(cluster.gql[1], token, note, side_b)
        time.sleep(1.0)  # long enough for replication to carry them, were it running
        assert (cluster.doc_on(0, note["id"]) or {}).get("_rev") == edited_a["version"]
        assert (cluster.doc_on(1, note["id"]) or {}).get("_rev") == edited_b["version"]
    finally:
        cluster.heal()
    return edited_a, edited_b


def test_edits_on_both_sides_of_a_partition_are_merged(cluster: PartitionableCluster) -> None:
    token, note = shared_note(cluster)
    first = PARAGRAPHS.replace("Intro paragraph.", "Intro paragraph, edited on A.")
    last = PARAGRAPHS.replace("Closing paragraph.", "Closing paragraph, edited on B.")
    edited_a, edited_b = partitioned_edits(cluster, token, note, first, last)
    healed = time.monotonic()

    merged = "Intro paragraph, edited on A.\n\nMiddle paragraph.\n\nClosing paragraph, edited on B."

    def converged() -> bool:
        cluster.settle()
        docs = [cluster.doc_on(n, note["id"]) for n in range(3)]
        return all(
            doc and doc["content"] == merged and "_conflicts" not in doc and doc["_rev"] == docs[0]["_rev"]
            for doc in docs
        )

    wait_until(converged, CONVERGE_SECONDS, "one merged note on every node")
    generation = int(cluster.doc_on(0, note["id"])["_rev"].split("-")[0])
    print(
        json.dumps(
            {
                "partition_merge_converged_seconds": round(time.monotonic() - healed, 2),
                "generation": generation,
            }
        )
    )
    # created (1), edited on each side (2), merged (3): resolvers on three nodes that settle the
    # same leaves must agree on one answer, not answer each other's answers round after round
    assert generation <= MAX_GENERATION

    for gql in cluster.gql:
        seen = gql.data(f"query($id: ID!) {{ note(id: $id) {{ {NOTE} }} }}", {"id": note["id"]}, token)[
            "note"
        ]
        assert seen["content"] == merged and seen["conflicts"] == []

    # the revision documents written with the merge replicate on their own, after the note itself
    def sides_kept() -> dict[str, str] | None:
        history = gql.data(f"query($id: ID!) {{ note(id: $id) {{ {NOTE} }} }}", {"id": note["id"]}, token)
        found = {r["content"]: r["reason"] for r in history["note"]["revisions"]}
        sides = {found.get(edited_a["content"]), found.get(edited_b["content"])}
        return found if sides == {"CONFLICT_MERGE", "CONFLICT_LOSER"} else None

    revisions = wait_until(sides_kept, CONVERGE_SECONDS, "both sides' versions in the note's revisions")
    assert revisions.get(PARAGRAPHS) == "EDIT"


def test_overlapping_edits_stay_visible_until_a_person_resolves_them(cluster: PartitionableCluster) -> None:
    token, note = shared_note(cluster)
    ours = PARAGRAPHS.replace("Middle paragraph.", "Middle rewritten on A.")
    theirs = PARAGRAPHS.replace("Middle paragraph.", "Middle rewritten on B.")
    partitioned_edits(cluster, token, note, ours, theirs)

    def one_conflict_everywhere() -> bool:
        cluster.settle()  # the resolver must leave this one alone
        docs = [cluster.doc_on(n, note["id"]) for n in range(3)]
        return all(doc and len(doc.get("_conflicts", [])) == 1 for doc in docs)

    wait_until(one_conflict_everywhere, CONVERGE_SECONDS, "the conflict on every node")
    seen = cluster.gql[2].data(
        f"query($id: ID!) {{ note(id: $id) {{ {NOTE} }} }}", {"id": note["id"]}, token
    )["note"]
    assert len(seen["conflicts"]) == 1
    assert {seen["content"], seen["conflicts"][0]["content"]} == {ours, theirs}

    keep = seen["conflicts"][0]
    settled = cluster.gql[2].data(
        f"""mutation($id: ID!, $keep: String!) {{
              resolveNoteConflict(id: $id, keepVersion: $keep) {{ {NOTE} }} }}""",
        {"id": note["id"], "keep": keep["version"]},
        token,
    )["resolveNoteConflict"]
    assert settled["content"] == keep["content"] and settled["conflicts"] == []

    def settled_everywhere() -> bool:
        docs = [cluster.doc_on(n, note["id"]) for n in range(3)]
        return all(doc and doc["content"] == keep["content"] and "_conflicts" not in doc for doc in docs)

    wait_until(settled_everywhere, CONVERGE_SECONDS, "the person's choice on every node")
    assert seen["content"] in {r["content"] for r in settled["revisions"] if r["reason"] == "CONFLICT_LOSER"}


def test_tcp_proxy_really_partitions(cluster: PartitionableCluster) -> None:
    """The partition is real: while B's proxy is cut, a write on A reaches C but not B."""
    client = cluster.clients[0].database(cluster.names["notes"])
    cluster.proxies[1].cut()
    try:
        doc_id = f"probe:{uuid.uuid4().hex}"
        client.put({"_id": doc_id, "type": "probe"})
        wait_until(
            lambda: cluster.clients[2].database(cluster.names["notes"]).get_or_none(doc_id),
            30,
            "the probe on C",
        )
        time.sleep(1.0)
        assert cluster.clients[1].database(cluster.names["notes"]).get_or_none(doc_id) is None
    finally:
        cluster.proxies[1].restore()
    wait_until(
        lambda: cluster.clients[1].database(cluster.names["notes"]).get_or_none(doc_id), 60, "the probe on B"
    )
