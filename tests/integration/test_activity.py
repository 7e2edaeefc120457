"""Activity tracking and analytics over the real API and database: one record per mutation,
written with the change; who sees which feed; figures checked against what the test wrote; time
zones; database requests that do not grow with the number of notes; retention."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notebook.core.activity import new_activity
from notebook.core.domain import format_time
from notebook.database.activity_repository import activity_to_doc

PASSWORD = "correct horse battery"

NOTE = "mutation($n: CreateNoteInput!) { createNote(input: $n) { id version notebook { id } } }"
STATS = """query($days: Int, $tz: String) { myStats(days: $days, timezone: $tz) {
  notebooks notes trashedNotes words topTags(limit: 3) { tag count }
  notesCreatedPerDay { day count } notesUpdatedPerDay { day count } } }"""
FEED = """query($nb: ID, $first: Int, $after: String) {
  activity(notebookId: $nb, first: $first, after: $after) {
  edges { cursor node { id action targetType targetId notebookId at summary actor { id } } }
  pageInfo { hasNextPage endCursor } } }"""

RENAME = (
    'mutation($id: ID!, $v: String!) { updateNotebook(id: $id, input: {name: "Q3"}, version: $v) { id } }'
)
EDIT = """mutation($id: ID!, $v: String!, $c: String) {
  updateNote(id: $id, input: {content: $c}, version: $v) { version } }"""
MOVE = "mutation($id: ID!, $nb: ID!) { moveNote(id: $id, notebookId: $nb) { id } }"
IMPORT = (
    "mutation($nb: ID!, $n: [CreateNoteInput!]!) { importNotes(notebookId: $nb, notes: $n) { imported } }"
)
UNSHARE = "mutation($id: ID!, $u: ID!) { unshareNotebook(id: $id, userId: $u) { id } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken } }"
CHANGE_PASSWORD = """mutation($c: String!, $n: String!) {
  changePassword(currentPassword: $c, newPassword: $n) { accessToken } }"""
DELETE_ACCOUNT = "mutation($p: String!) { deleteAccount(password: $p) }"


def _services(app: Any) -> Any:
    return app.extensions["notebook"]


def activity_docs(app: Any) -> dict[str, dict[str, Any]]:
    """Every activity record in every database of the app, read straight from CouchDB."""
    found: dict[str, dict[str, Any]] = {}
    for db in _services(app).databases.all():
        rows = db.client.request(
            "GET",
            f"{db.name}/_all_docs",
            params={"startkey": "activity:", "endkey": "activity:\ufff0", "include_docs": True},
        )["rows"]
        found.update({row["id"]: row["doc"] for row in rows})
    return found


def new_records(app: Any, change: Callable[[], Any]) -> list[dict[str, Any]]:
    before = activity_docs(app)
    change()
    return [doc for doc_id, doc in activity_docs(app).items() if doc_id not in before]


def one_record(app: Any, change: Callable[[], Any], **expected: Any) -> dict[str, Any]:
    records = new_records(app, change)
    assert len(records) == 1, [r["action"] for r in records]
    record = records[0]
    for field, value in expected.items():
        assert record.get(field) == value, (field, record)
    assert record["at"] and record["summary"]
    return record


def test_every_mutation_leaves_exactly_one_record(app: Any, gql: Any) -> None:
    ada = gql.register(password=PASSWORD)
    bob = gql.register()
    uid, token = ada["user"]["id"], ada["token"]

    def run(query: str, variables: dict[str, Any] | None = None, who: str = token) -> dict[str, Any]:
        return gql.data(query, variables, token=who)

    book: dict[str, Any] = {}

    def create_book() -> None:
        book.update(
            run('mutation { createNotebook(input: {name: "Plans"}) { id version } }')["createNotebook"]
        )

    one_record(app, create_book, action="notebook.created", actor_id=uid, target_type="notebook")
    nb = book["id"]
    one_record(
        app,
        lambda: run(
            RENAME,
            {"id": nb, "v": book["version"]},
        ),
        action="notebook.updated", target_id=nb, notebook_id=nb,
    )  # fmt: skip
    one_record(
        app,
        lambda: run(
            "mutation($id: ID!, $e: String!) { shareNotebook(id: $id, email: $e, role: EDITOR) { id } }",
            {"id": nb, "e": bob["user"]["email"]},
        ),
        action="notebook.shared", notebook_id=nb,
    )  # fmt: skip
    note: dict[str, Any] = {}

    def create() -> None:
        note.update(
            run(NOTE, {"n": {"notebookId": nb, "title": "Secret plan", "content": "alpha beta"}})[
                "createNote"
            ]
        )

    created = one_record(app, create, action="note.created", notebook_id=nb, notebook_owner_id=uid)
    assert "Secret" not in created["summary"] and "alpha" not in created["summary"]
    note_id = note["id"]
    # bob, an editor, edits: his record, in ada's notebook
    updated = one_record(
        app,
        lambda: note.update(
            gql.data(
                EDIT,
                {"id": note_id, "v": note["version"], "c": "alpha gamma"},
                token=bob["token"],
            )["updateNote"]
        ),
        action="note.updated", actor_id=bob["user"]["id"], target_id=note_id, notebook_owner_id=uid,
    )  # fmt: skip
    assert "gamma" not in str(updated)
    default_nb = run("{ me { id } notebooks { id } }")["notebooks"][0]["id"]
    one_record(
        app,
        lambda: run(MOVE, {"id": note_id, "nb": default_nb}),
        action="note.moved", notebook_id=default_nb,
    )  # fmt: skip
    one_record(
        app,
        lambda: run("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": note_id}),
        action="note.trashed",
    )
    one_record(
        app,
        lambda: run("mutation($id: ID!) { restoreNote(id: $id) { id } }", {"id": note_id}),
        action="note.restored",
    )
    revision = run("query($id: ID!) { note(id: $id) { revisions(first: 5) { id } } }", {"id": note_id})[
        "note"
    ]
    one_record(
        app,
        lambda: run(
            "mutation($id: ID!, $r: ID!) { restoreNoteRevision(id: $id, revisionId: $r) { id } }",
            {"id": note_id, "r": revision["revisions"][-1]["id"]},
        ),
        action="note.revision_restored",
    )
    run("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": note_id})
    one_record(
        app,
        lambda: run("mutation($id: ID!) { deleteNote(id: $id) }", {"id": note_id}),
        action="note.deleted",
        target_id=note_id,
    )
    imported = one_record(
        app,
        lambda: run(
            IMPORT,
            {"nb": nb, "n": [{"title": f"i{i}", "content": "x"} for i in range(3)]},
        ),
        action="note.imported", notebook_id=nb,
    )  # fmt: skip
    assert imported["count"] == 3
    one_record(
        app,
        lambda: run(UNSHARE, {"id": nb, "u": bob["user"]["id"]}),
        action="notebook.unshared",
    )  # fmt: skip
    one_record(
        app,
        lambda: run("mutation($id: ID!) { deleteNotebook(id: $id) }", {"id": nb}),
        action="notebook.deleted",
    )
    # accounts
    login: dict[str, Any] = {}

    def sign_in() -> None:
        login.update(
            gql.data(
                LOGIN,
                {"e": ada["user"]["email"], "p": PASSWORD},
            )["login"]
        )

    one_record(app, sign_in, action="user.login", actor_id=uid)
    one_record(
        app,
        lambda: gql.data("mutation($t: String!) { logout(refreshToken: $t) }", {"t": login["refreshToken"]}),
        action="user.logout", actor_id=uid,
    )  # fmt: skip
    fresh: dict[str, Any] = {}

    def change_password() -> None:
        fresh.update(
            run(
                CHANGE_PASSWORD,
                {"c": PASSWORD, "n": "another horse battery"},
            )["changePassword"]
        )

    one_record(app, change_password, action="user.password_changed", actor_id=uid)
    one_record(
        app,
        lambda: run("mutation { logoutEverywhere }", who=fresh["accessToken"]),
        action="user.logout_everywhere",
    )
    carol: dict[str, Any] = {}
    one_record(app, lambda: carol.update(gql.register(password=PASSWORD)), action="user.registered")
    one_record(
        app,
        lambda: run(DELETE_ACCOUNT, {"p": PASSWORD}, who=carol["token"]),
        action="user.deleted", actor_id=carol["user"]["id"],
    )  # fmt: skip


def test_a_refused_mutation_leaves_no_record(app: Any, gql: Any) -> None:
    ada, bob = gql.register(), gql.register()
    nb = gql.data("{ notebooks { id } }", token=ada["token"])["notebooks"][0]["id"]
    note = gql.data(NOTE, {"n": {"title": "t", "content": "c"}}, token=ada["token"])["createNote"]

    def refused() -> None:
        assert (
            gql.error_code(NOTE, {"n": {"notebookId": nb, "title": "x"}}, token=bob["token"]) == "NOT_FOUND"
        )
        stale = 'mutation($id: ID!) { updateNote(id: $id, input: {title: "y"}, version: "1-stale") { id } }'
        assert gql.error_code(stale, {"id": note["id"]}, token=ada["token"]) == "CONFLICT"

    assert new_records(app, refused) == []


def test_members_see_a_shared_notebooks_activity_and_strangers_none(app: Any, gql: Any) -> None:
    ada, bob, eve = gql.register(), gql.register(), gql.register()
    nb = gql.data('mutation { createNotebook(input: {name: "Team"}) { id } }', token=ada["token"])[
        "createNotebook"
    ]["id"]
    gql.data(
        "mutation($id: ID!, $e: String!) { shareNotebook(id: $id, email: $e, role: VIEWER) { id } }",
        {"id": nb, "e": bob["user"]["email"]},
        token=ada["token"],
    )
    for i in range(3):
        gql.data(NOTE, {"n": {"notebookId": nb, "title": f"n{i}"}}, token=ada["token"])
    feed = gql.data(FEED, {"nb": nb, "first": 10}, token=bob["token"])["activity"]
    actions = [edge["node"]["action"] for edge in feed["edges"]]
    assert actions == ["note.created"] * 3 + ["notebook.shared", "notebook.created"]
    assert all(edge["node"]["actor"]["id"] == ada["user"]["id"] for edge in feed["edges"])
    times = [edge["node"]["at"] for edge in feed["edges"]]
    assert times == sorted(times, reverse=True)
    # bob's own feed holds the shared notebook's activity too
    mine = gql.data(FEED, {"first": 50}, token=bob["token"])["activity"]["edges"]
    assert sum(1 for e in mine if e["node"]["notebookId"] == nb) == 5
    # a stranger sees neither the notebook's feed nor anything of it in theirs
    assert gql.error_code(FEED, {"nb": nb}, token=eve["token"]) == "NOT_FOUND"
    theirs = gql.data(FEED, {"first": 50}, token=eve["token"])["activity"]["edges"]
    assert all(e["node"]["notebookId"] != nb for e in theirs)
    assert [e["node"]["action"] for e in theirs] == ["user.registered"]
    assert gql.error_code(FEED, {}) == "UNAUTHENTICATED"


def test_the_feed_is_paginated_by_cursor(app: Any, gql: Any) -> None:
    ada = gql.register()
    for i in range(7):
        gql.data(NOTE, {"n": {"title": f"n{i}"}}, token=ada["token"])
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = gql.data(FEED, {"first": 3, "after": after}, token=ada["token"])["activity"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 8  # 7 notes and the registration
    assert gql.error_code(FEED, {"after": "bogus"}, token=ada["token"]) == "BAD_USER_INPUT"
    assert gql.error_code(FEED, {"first": 1000}, token=ada["token"]) in {
        "BAD_USER_INPUT",
        "QUERY_TOO_COMPLEX",
    }


def test_my_stats_match_what_the_test_wrote(app: Any, gql: Any) -> None:
    ada, bob = gql.register(), gql.register()
    token = ada["token"]
    gql.data('mutation { createNotebook(input: {name: "Second"}) { id } }', token=token)
    contents = ["one two three", "four five", "six"]
    ids = []
    for i, content in enumerate(contents):
        tags = ["work", "urgent"] if i < 2 else ["work"]
        ids.append(
            gql.data(NOTE, {"n": {"title": f"Title{i}", "content": content, "tags": tags}}, token=token)[
                "createNote"
            ]
        )
    gql.data("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": ids[2]["id"]}, token=token)
    gql.data(
        EDIT,
        {"id": ids[0]["id"], "v": ids[0]["version"], "c": "one two three seven"},
        token=token,
    )
    gql.data(NOTE, {"n": {"title": "Bob's", "content": "not ada's words"}}, token=bob["token"])
    stats = gql.data(STATS, {"days": 7, "tz": "UTC"}, token=token)["myStats"]
    assert stats["notebooks"] == 2
    assert stats["notes"] == 2 and stats["trashedNotes"] == 1
    # words of the live notes, titles included: "Title0 one two three seven", "Title1 four five"
    assert stats["words"] == 5 + 3
    assert stats["topTags"] == [{"tag": "urgent", "count": 2}, {"tag": "work", "count": 2}]
    today = datetime.now(UTC).date().isoformat()
    created = {d["day"]: d["count"] for d in stats["notesCreatedPerDay"]}
    updated = {d["day"]: d["count"] for d in stats["notesUpdatedPerDay"]}
    assert len(created) == 7 and created[today] == 3 and sum(created.values()) == 3
    assert updated[today] == 1 and sum(updated.values()) == 1
    assert gql.error_code(STATS, {"tz": "Mars/Olympus"}, token=token) == "BAD_USER_INPUT"
    assert gql.error_code(STATS, {"days": 0}, token=token) == "BAD_USER_INPUT"
    assert gql.error_code(STATS, {"days": 10_000}, token=token) == "BAD_USER_INPUT"
    assert gql.error_code(STATS, {}) == "UNAUTHENTICATED"


def _record_at(app: Any, actor: str, at: datetime, action: str = "note.created") -> None:
    event = new_activity(action, actor, "note", "note:" + "0" * 32, format_time(at))
    _services(app).databases.notes.bulk_docs([activity_to_doc(event)])


@pytest.mark.parametrize(
    ("zone", "late_day", "early_day"),
    [
        ("UTC", 0, 0),
        ("Europe/Paris", 1, 0),  # UTC+1 in winter: 23:30Z is already the next day
        ("America/New_York", 0, -1),  # UTC-5: 00:20Z is still the day before
        ("Asia/Kathmandu", 1, 0),  # UTC+5:45: a zone that is not a whole number of hours
    ],
)
def test_time_zones_shift_day_buckets(app: Any, gql: Any, zone: str, late_day: int, early_day: int) -> None:
    ada = gql.register()
    day = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    _record_at(app, ada["user"]["id"], day.replace(hour=23, minute=30))
    _record_at(app, ada["user"]["id"], day.replace(hour=0, minute=20))
    stats = gql.data(STATS, {"days": 10, "tz": zone}, token=ada["token"])["myStats"]
    counts = {d["day"]: d["count"] for d in stats["notesCreatedPerDay"] if d["count"]}
    expected: dict[str, int] = {}
    for offset in (late_day, early_day):
        key = (day.date() + timedelta(days=offset)).isoformat()
        expected[key] = expected.get(key, 0) + 1
    assert counts == expected


def test_my_stats_cost_the_same_requests_for_1_and_12_notes(app: Any, gql: Any) -> None:
    costs = {}
    for notes in (1, 12):
        who = gql.register()
        for i in range(notes):
            gql.data(
                NOTE, {"n": {"title": f"n{i}", "content": "a b c", "tags": [f"t{i % 4}"]}}, token=who["token"]
            )
        gql.data(STATS, {"days": 30}, token=who["token"])  # views up to date
        before = _services(app).couch.requests.total
        stats = gql.data(STATS, {"days": 30}, token=who["token"])["myStats"]
        costs[notes] = _services(app).couch.requests.total - before
        assert stats["notes"] == notes
    assert costs[1] == costs[12], costs
    assert costs[12] <= 6, costs  # the caller, notes and words, notebooks, tags, activity


def test_system_stats_for_admins_only(app: Any, gql: Any) -> None:
    admin, other = gql.register(), gql.register()
    _services(app).auth.set_admin(admin["user"]["email"])
    query = """{ systemStats(days: 3) {
      users activeUsers(days: 1) notebooks notes writesPerDay { day count } conflictsResolved } }"""
    for i in range(2):
        gql.data(NOTE, {"n": {"title": f"n{i}"}}, token=other["token"])
    stats = gql.data(query, token=admin["token"])["systemStats"]
    assert stats["users"] == 2 and stats["activeUsers"] == 2
    assert stats["notebooks"] == 2 and stats["notes"] == 2
    assert len(stats["writesPerDay"]) == 3
    assert stats["writesPerDay"][-1] == {"day": datetime.now(UTC).date().isoformat(), "count": 2}
    assert stats["conflictsResolved"] == 0
    assert gql.error_code(query, token=other["token"]) == "FORBIDDEN"


def test_security_events_are_recorded_for_admins(app: Any, gql: Any) -> None:
    admin, victim = gql.register(), gql.register()
    _services(app).auth.set_admin(admin["user"]["email"])
    login = 'mutation($e: String!) { login(email: $e, password: "wrong password here") { accessToken } }'
    assert gql.error_code(login, {"e": victim["user"]["email"]}) == "UNAUTHENTICATED"
    query = "{ securityEvents(first: 10) { edges { node { action targetType summary } } } }"
    events = [e["node"] for e in gql.data(query, token=admin["token"])["securityEvents"]["edges"]]
    assert {"security.login_failed", "security.admin_granted"} <= {e["action"] for e in events}
    assert all(victim["user"]["email"] not in str(e) for e in events)
    assert gql.error_code(query, token=victim["token"]) == "FORBIDDEN"


def test_prune_deletes_only_records_older_than_the_retention(app: Any, gql: Any) -> None:
    ada = gql.register()
    old = datetime.now(UTC) - timedelta(days=400)
    for hours in range(3):
        _record_at(app, ada["user"]["id"], old + timedelta(hours=hours))
    before = activity_docs(app)
    assert _services(app).activity.prune() == 3
    after = activity_docs(app)
    assert len(before) - len(after) == 3
    assert all(doc["at"] >= format_time(datetime.now(UTC) - timedelta(days=365)) for doc in after.values())
    assert _services(app).activity.prune() == 0


def test_rate_limit_refusals_and_refresh_reuse_are_security_events(config: Any) -> None:
    from dataclasses import replace

    from notebook.api.app import create_app
    from tests.conftest import GraphQL

    app = create_app(replace(config, register_per_ip=2))
    try:
        gql = GraphQL(app.test_client())
        admin = gql.register()
        _services(app).auth.set_admin(admin["user"]["email"])
        gql.register()
        register = """mutation($e: String!) {
          register(email: $e, password: "long enough pass") { user { id } } }"""
        codes = [gql.error_code(register, {"e": f"flood{i}@example.com"}) for i in range(3)]
        assert codes == ["RATE_LIMITED"] * 3
        refresh = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }"
        gql.data(refresh, {"t": admin["refreshToken"]})
        assert gql.error_code(refresh, {"t": admin["refreshToken"]}) == "UNAUTHENTICATED"  # replayed
        fresh = gql.data(LOGIN, {"e": admin["user"]["email"], "p": PASSWORD})["login"]["accessToken"]
        query = "{ securityEvents(first: 20) { edges { node { action targetId } } } }"
        events = [e["node"]["action"] for e in gql.data(query, token=fresh)["securityEvents"]["edges"]]
        # three refusals of one address within a minute: one event, not three
        assert events.count("security.rate_limited") in (1, 2)  # 2 only if the minute turned
        assert events.count("security.refresh_reuse") == 1
    finally:
        _services(app).close()
