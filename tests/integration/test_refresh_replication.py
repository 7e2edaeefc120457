"""Refresh-token reuse across two replicating nodes.

Two pouchdb-server nodes replicate both ways, each receiving through a loopback TCP proxy that
the test can cut. With replication cut, the same refresh token is used on node A's app and on
node B's app: both succeed, as neither node can know. When replication delivers the two `used`
versions of the token, the conflict resolver sees the reuse and revokes the whole family, so
neither successor refreshes any more, on either node, and the access tokens issued with them
are refused on both nodes too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notebook.utils.crypto_utils import token_digest
from tests.support.cluster import PartitionableCluster, partitionable_cluster
from tests.support.waiting import wait_for

REFRESH = """mutation($token: String!) {
  refreshToken(refreshToken: $token) { accessToken refreshToken user { id } } }"""
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { refreshToken } }"""
PASSWORD = "correct horse battery"
REPLICATION_SECONDS = 60


def token_doc(pair: PartitionableCluster, node: int, token: str) -> dict[str, Any] | None:
    return pair.doc_on(node, f"refresh:{token_digest(token)}", "users")


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    """The shared tests.support.waiting.wait_for, with this module's replication allowance."""
    return wait_for(condition, REPLICATION_SECONDS, what)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionableCluster]:
    with partitionable_cluster(tmp_path_factory.mktemp("refresh-nodes"), 2) as built:
        yield built


def test_a_refresh_token_used_on_two_nodes_revokes_its_family(pair: PartitionableCluster) -> None:
    account = pair.gql[0].register(f"ada-{uuid.uuid4().hex[:6]}@example.com")
    email, token = account["user"]["email"], account["refreshToken"]
    wait_until(lambda: token_doc(pair, 1, token), "the refresh token on node B")
    # replication need not deliver the account before its token (CouchDB 3 writes in batches)
    wait_until(lambda: pair.doc_on(1, account["user"]["id"], "users"), "the account on node B")

    pair.cut()
    try:
        # the owner refreshes on A; a thief with a copy of the token refreshes on B
        on_a = pair.gql[0].data(REFRESH, {"token": token})["refreshToken"]
        on_b = pair.gql[1].data(REFRESH, {"token": token})["refreshToken"]
    finally:
        pair.heal()
    # another session of the same account, started before the reuse, must survive it
    other = pair.gql[1].data(LOGIN, {"email": email, "password": PASSWORD})["login"]["refreshToken"]

    def conflict_and_successors_on_a() -> bool:
        doc = token_doc(pair, 0, token)
        return bool(doc and doc.get("_conflicts")) and all(
            token_doc(pair, 0, t) for t in (on_a["refreshToken"], on_b["refreshToken"], other)
        )

    wait_until(conflict_and_successors_on_a, "both uses of the token and every successor on node A")
    successors = (on_a["refreshToken"], on_b["refreshToken"])
    assert not any(token_doc(pair, 0, t)["revoked"] for t in successors)  # nothing has noticed yet

    report = pair.apps[0].extensions["notebook"].resolver.resolve_pending()
    assert report.revoked_families == 1
    assert all(token_doc(pair, 0, t)["revoked"] for t in successors)
    assert "_conflicts" not in token_doc(pair, 0, token)

    # the family is dead on node A at once, and on node B once replication brings the revocation
    assert pair.gql[0].error_code(REFRESH, {"token": on_a["refreshToken"]}) == "UNAUTHENTICATED"
    # and so are the access tokens of that session, not only its refresh tokens
    assert pair.gql[0].error_code("{ me { id } }", token=on_a["accessToken"]) == "UNAUTHENTICATED"
    assert pair.gql[0].error_code("{ me { id } }", token=on_b["accessToken"]) == "UNAUTHENTICATED"
    # the thief's access token, issued by node B, ends on B once the user document that lists
    # the session as ended has replicated there
    user_id = account["user"]["id"]
    ended = set(pair.doc_on(0, user_id, "users")["ended_sessions"])
    assert ended, "node A lists no ended session"
    wait_until(
        lambda: ended <= set((pair.doc_on(1, user_id, "users") or {}).get("ended_sessions") or {}),
        "the ended session on node B",
    )
    assert pair.gql[1].error_code("{ me { id } }", token=on_b["accessToken"]) == "UNAUTHENTICATED"
    wait_until(
        lambda: all((token_doc(pair, 1, t) or {}).get("revoked") for t in successors),
        "the revocation on node B",
    )
    for node in (0, 1):
        for successor in successors:
            assert pair.gql[node].error_code(REFRESH, {"token": successor}) == "UNAUTHENTICATED"
    assert pair.gql[1].data(REFRESH, {"token": other})["refreshToken"]["user"]["id"] == account["user"]["id"]
    wait_until(lambda: "_conflicts" not in (token_doc(pair, 1, token) or {"_conflicts": 1}), "settled on B")


def test_one_use_on_each_of_two_tokens_is_no_reuse(pair: PartitionableCluster) -> None:
    """Refreshing on alternating nodes, with replication running, never trips the rule."""
    account = pair.gql[0].register(f"bob-{uuid.uuid4().hex[:6]}@example.com")
    token = account["refreshToken"]
    wait_until(lambda: pair.doc_on(1, account["user"]["id"], "users"), "the account on node B")
    for step in range(4):
        node = step % 2
        wait_until(lambda n=node, t=token: token_doc(pair, n, t), "the current token on the next node")
        token = pair.gql[node].data(REFRESH, {"token": token})["refreshToken"]["refreshToken"]
    for app in pair.apps:
        assert app.extensions["notebook"].resolver.resolve_pending().revoked_families == 0
    wait_until(lambda: token_doc(pair, 0, token), "the last token on node A")
    assert pair.gql[0].data(REFRESH, {"token": token})["refreshToken"]["user"]["id"] == account["user"]["id"]
