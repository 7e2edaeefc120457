"""The conflict rule for refresh tokens: which conflicts reveal a token used on two nodes."""

from __future__ import annotations

import pytest

from notebook.database.conflicts import Leaf, refresh_family_to_revoke


def _leaf(rev: str, used: bool, revoked: bool, doc_type: str = "refresh_token") -> Leaf:
    doc = {
        "_id": "refresh:abc",
        "_rev": rev,
        "type": doc_type,
        "family": "fam-1",
        "used": used,
        "revoked": revoked,
    }
    return Leaf(doc, [rev, "1-a"])


@pytest.mark.parametrize(
    ("leaves", "family"),
    [
        # used on two nodes: a replay before replication arrived
        ([_leaf("2-b", True, False), _leaf("2-c", True, False)], "fam-1"),
        # used on one node while the session was revoked on the other: the successor escaped
        ([_leaf("2-b", False, True), _leaf("2-c", True, False)], "fam-1"),
        ([_leaf("3-b", True, True), _leaf("2-c", True, False)], "fam-1"),
        # revoked on both sides: already dead everywhere
        ([_leaf("2-b", False, True), _leaf("2-c", False, True)], None),
        # no conflict at all
        ([_leaf("2-b", True, False)], None),
        # not a refresh token
        ([_leaf("2-b", True, False, "user"), _leaf("2-c", True, False, "user")], None),
    ],
)
def test_refresh_family_to_revoke(leaves: list[Leaf], family: str | None) -> None:
    assert refresh_family_to_revoke(leaves) == family
