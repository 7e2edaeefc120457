"""Note revisions, and conflict leaves settled by the resolver, on a real database node.

Conflict leaves are written the way replication writes them (`_bulk_docs` with new_edits=false);
tests/integration/test_partition.py makes them with real replication between nodes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from notebook.core.domain import NoteRevision, revision_id

PARAGRAPHS = "First paragraph.\n\nMiddle paragraph.\n\nLast paragraph."

NOTE_FIELDS = """id title content tags version
  revisions { id title content tags reason author { email } }
  conflicts { version title content tags updatedBy { email } }"""


def create(gql: Any, token: str, **fields: Any) -> dict:
    fields.setdefault("title", "Plan")
    fields.setdefault("content", PARAGRAPHS)
    return gql.data(
        f"mutation($input: CreateNoteInput!) {{ createNote(input: $input) {{ {NOTE_FIELDS} }} }}",
        {"input": fields},
        token,
    )["createNote"]


def update(gql: Any, token: str, note: dict, **fields: Any) -> dict:
    return gql.data(
        f"""mutation($id: ID!, $input: UpdateNoteInput!, $version: String!) {{
              updateNote(id: $id, input: $input, version: $version) {{ {NOTE_FIELDS} }} }}""",
        {"id": note["id"], "input": fields, "version": note["version"]},
        token,
    )["updateNote"]


def read(gql: Any, token: str, note_id: str) -> dict:
    return gql.data(f"query($id: ID!) {{ note(id: $id) {{ {NOTE_FIELDS} }} }}", {"id": note_id}, token)[
        "note"
    ]


def test_edits_keep_previous_versions_newest_first(gql: Any) -> None:
    user = gql.register()
    note = create(gql, user["token"], tags=["x"])
    note = update(gql, user["token"], note, title="Plan v2")
    note = update(gql, user["token"], note, content="Rewritten")
    note = update(gql, user["token"], note, pinned=True)  # not title, content or tags: no revision
    revisions = read(gql, user["token"], note["id"])["revisions"]
    assert [r["title"] for r in revisions] == ["Plan v2", "Plan"]
    assert revisions[0]["content"] == PARAGRAPHS and revisions[0]["reason"] == "EDIT"
    assert revisions[1]["author"]["email"] == user["user"]["email"]


def test_restore_revision_keeps_the_replaced_version(gql: Any) -> None:
    user = gql.register()
    note = create(gql, user["token"])
    note = update(gql, user["token"], note, content="Oops, deleted everything")
    first = note["revisions"][0]
    restored = gql.data(
        f"""mutation($id: ID!, $rev: ID!) {{
              restoreNoteRevision(id: $id, revisionId: $rev) {{ {NOTE_FIELDS} }} }}""",
        {"id": note["id"], "rev": first["id"]},
        user["token"],
    )["restoreNoteRevision"]
    assert restored["content"] == PARAGRAPHS
    assert restored["revisions"][0]["reason"] == "RESTORE"
    assert restored["revisions"][0]["content"] == "Oops, deleted everything"


def test_another_users_revision_cannot_be_restored(gql: Any) -> None:
    alice, bob = gql.register(), gql.register()
    alice_note = update(gql, alice["token"], create(gql, alice["token"]), content="v2")
    bob_note = create(gql, bob["token"])
    code = gql.error_code(
        "mutation($id: ID!, $rev: ID!) { restoreNoteRevision(id: $id, revisionId: $rev) { id } }",
        {"id": bob_note["id"], "rev": alice_note["revisions"][0]["id"]},
        bob["token"],
    )
    assert code == "NOT_FOUND"
    assert read(gql, alice["token"], alice_note["id"])["content"] == "v2"


def test_retention_prunes_oldest_revisions(app: Any, gql: Any) -> None:
    app.extensions["notebook"].notes.revision_retention = 3
    user = gql.register()
    note = create(gql, user["token"])
    for i in range(12):
        note = update(gql, user["token"], note, content=f"version {i}")
    revisions = read(gql, user["token"], note["id"])["revisions"]
    assert len(revisions) <= 3 + 9  # pruned on every tenth edit
    assert revisions[0]["content"] == "version 10"


def test_deleting_a_note_deletes_its_revisions(app: Any, gql: Any) -> None:
    user = gql.register()
    note = update(gql, user["token"], create(gql, user["token"]), content="v2")
    gql.data("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": note["id"]}, user["token"])
    assert gql.data("mutation($id: ID!) { deleteNote(id: $id) }", {"id": note["id"]}, user["token"])
    notes_db = app.extensions["notebook"].databases.notes
    assert notes_db.get_or_none(note["revisions"][0]["id"]) is None


def _sibling(services: Any, note_id: str, parent_rev: str, **changes: Any) -> str:
    """Write a competing child of `parent_rev`, as replication from another node would (sealed
    as the app seals, through its note repository)."""
    notes_db, repo = services.databases.notes, services.notes.notes
    parent = notes_db.get(note_id, rev=parent_rev, revs=True)
    note = repo.from_doc(parent)
    for name, value in changes.items():
        setattr(note, name, value)
    body = repo.to_doc(note)
    body["hlc"] = parent.get("hlc", "")
    generation = int(parent_rev.split("-")[0]) + 1
    new_hash = hashlib.md5(repr(sorted(changes.items())).encode()).hexdigest()
    body["_rev"] = f"{generation}-{new_hash}"
    body["_revisions"] = {"start": generation, "ids": [new_hash, *parent["_revisions"]["ids"]]}
    # the other node's write path kept the replaced version too, under the same id
    replaced = repo.from_doc(parent)
    revision = repo._revision_doc(NoteRevision.of(replaced, "EDIT"), replaced)
    notes_db.bulk_docs([body], new_edits=False)
    notes_db.bulk_docs([revision])
    return body["_rev"]


def test_resolver_merges_edits_in_different_paragraphs(app: Any, gql: Any) -> None:
    services = app.extensions["notebook"]
    user = gql.register()
    base = create(gql, user["token"], tags=["a", "b"])
    ours = update(
        gql, user["token"], base, content=PARAGRAPHS.replace("First", "FIRST"), tags=["a", "b", "c"]
    )
    theirs_rev = _sibling(
        services,
        base["id"],
        base["version"],
        content=PARAGRAPHS.replace("Last", "LAST"),
        tags=["b"],
        updated_at="2000-01-01T00:00:00.000000Z",
    )
    assert len(read(gql, user["token"], base["id"])["conflicts"]) == 1

    report = services.resolver.resolve_pending()
    assert report.resolved == 1 and report.left_for_people == 0

    merged = read(gql, user["token"], base["id"])
    assert merged["content"] == "FIRST paragraph.\n\nMiddle paragraph.\n\nLAST paragraph."
    assert set(merged["tags"]) == {"b", "c"}
    assert merged["conflicts"] == []
    # both competing versions are kept: one replaced by the merge, one as the losing leaf
    replaced = {r["content"]: r["reason"] for r in merged["revisions"]}
    assert {replaced[ours["content"]], replaced[PARAGRAPHS.replace("Last", "LAST")]} == {
        "CONFLICT_MERGE",
        "CONFLICT_LOSER",
    }
    leaves = services.databases.notes.get(base["id"], conflicts=True)
    assert "_conflicts" not in leaves and theirs_rev != leaves["_rev"]
    # running again finds nothing left to do
    assert services.resolver.resolve_pending().resolved == 0


def test_overlapping_edits_wait_for_a_person(app: Any, gql: Any) -> None:
    services = app.extensions["notebook"]
    user = gql.register()
    base = create(gql, user["token"])
    ours = update(gql, user["token"], base, content=PARAGRAPHS.replace("Middle", "Ours"))
    theirs_rev = _sibling(
        services, base["id"], base["version"], content=PARAGRAPHS.replace("Middle", "Theirs")
    )

    report = services.resolver.resolve_pending()
    assert report.left_for_people == 1
    note = read(gql, user["token"], base["id"])
    assert len(note["conflicts"]) == 1
    assert {note["content"], note["conflicts"][0]["content"]} == {
        ours["content"],
        PARAGRAPHS.replace("Middle", "Theirs"),
    }

    code = gql.error_code(
        'mutation($id: ID!) { resolveNoteConflict(id: $id, keepVersion: "9-nope") { id } }',
        {"id": base["id"]},
        user["token"],
    )
    assert code == "BAD_USER_INPUT"
    settled = gql.data(
        f"""mutation($id: ID!, $keep: String!) {{
              resolveNoteConflict(id: $id, keepVersion: $keep) {{ {NOTE_FIELDS} }} }}""",
        {"id": base["id"], "keep": theirs_rev},
        user["token"],
    )["resolveNoteConflict"]
    assert settled["content"] == PARAGRAPHS.replace("Middle", "Theirs")
    assert settled["conflicts"] == []
    assert ("CONFLICT_LOSER", ours["content"]) in {(r["reason"], r["content"]) for r in settled["revisions"]}


def test_person_can_supply_merged_fields(app: Any, gql: Any) -> None:
    services = app.extensions["notebook"]
    user = gql.register()
    base = create(gql, user["token"])
    update(gql, user["token"], base, content="A")
    _sibling(services, base["id"], base["version"], content="B")
    settled = gql.data(
        f"""mutation($id: ID!) {{
              resolveNoteConflict(id: $id, merged: {{content: "A and B"}}) {{ {NOTE_FIELDS} }} }}""",
        {"id": base["id"]},
        user["token"],
    )["resolveNoteConflict"]
    assert settled["content"] == "A and B" and settled["conflicts"] == []
    assert {"A", "B"} <= {r["content"] for r in settled["revisions"] if r["reason"] == "CONFLICT_MERGE"}


def test_other_users_cannot_see_or_settle_a_conflict(app: Any, gql: Any) -> None:
    services = app.extensions["notebook"]
    alice, bob = gql.register(), gql.register()
    base = create(gql, alice["token"])
    update(gql, alice["token"], base, content="A")
    _sibling(services, base["id"], base["version"], content="B")
    code = gql.error_code(
        'mutation($id: ID!) { resolveNoteConflict(id: $id, merged: {content: "x"}) { id } }',
        {"id": base["id"]},
        bob["token"],
    )
    assert code == "NOT_FOUND"
    assert len(read(gql, alice["token"], base["id"])["conflicts"]) == 1


def test_resolver_waits_for_the_ancestor_revision_to_arrive(app: Any, gql: Any) -> None:
    """Replication may deliver the competing leaf before the revision that holds the common
    ancestor: the resolver must wait for it rather than merge against the wrong base."""
    services = app.extensions["notebook"]
    notes_db = services.databases.notes
    user = gql.register()
    base = create(gql, user["token"])
    update(gql, user["token"], base, content=PARAGRAPHS.replace("First", "FIRST"))
    _sibling(services, base["id"], base["version"], content=PARAGRAPHS.replace("Last", "LAST"))
    ancestor = notes_db.get(revision_id(base["id"], base["version"]))
    notes_db.delete(ancestor["_id"], ancestor["_rev"])  # not replicated here yet

    report = services.resolver.resolve_pending()
    assert report.waiting == 1 and report.resolved == 0
    assert len(read(gql, user["token"], base["id"])["conflicts"]) == 1

    notes_db.put({k: v for k, v in ancestor.items() if k != "_rev"})  # ... and now it has arrived
    assert services.resolver.resolve_pending().resolved == 1
    merged = read(gql, user["token"], base["id"])
    assert merged["content"] == "FIRST paragraph.\n\nMiddle paragraph.\n\nLAST paragraph."


def test_resolvers_racing_on_one_note_settle_it_once(app: Any, gql: Any, config: Any) -> None:
    """Several app processes run the resolver at once: the outcome is the same single merge."""
    import threading

    from notebook.bootstrap import bootstrap

    services = app.extensions["notebook"]
    user = gql.register()
    base = create(gql, user["token"])
    ours = update(gql, user["token"], base, content=PARAGRAPHS.replace("First", "FIRST"))
    _sibling(services, base["id"], base["version"], content=PARAGRAPHS.replace("Last", "LAST"))
    processes = [bootstrap(config, install_schema=False) for _ in range(4)]  # one per "process"
    start = threading.Barrier(len(processes))
    reports: list[Any] = []

    def run(other: Any) -> None:
        start.wait()
        reports.append(other.resolver.resolve_pending())

    threads = [threading.Thread(target=run, args=(other,)) for other in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for other in processes:
        other.close()
    services.resolver.resolve_pending()  # a straggler round, as the next feed event would run

    note = read(gql, user["token"], base["id"])
    assert note["content"] == "FIRST paragraph.\n\nMiddle paragraph.\n\nLAST paragraph."
    assert note["conflicts"] == []
    assert "_conflicts" not in services.databases.notes.get(base["id"], conflicts=True)
    contents = [r["content"] for r in note["revisions"]]
    assert ours["content"] in contents and PARAGRAPHS.replace("Last", "LAST") in contents
    assert sum(report.errors for report in reports) <= len(processes) - 1


def test_the_resolver_thread_settles_conflicts_by_itself(config: Any) -> None:
    """What runs in production: the app's own resolver thread follows the changes feed."""
    import dataclasses
    import time

    from notebook.api.app import create_app
    from tests.conftest import GraphQL

    app = create_app(dataclasses.replace(config, conflict_resolver=True, conflict_poll_seconds=0.2))
    try:
        gql = GraphQL(app.test_client())
        services = app.extensions["notebook"]
        user = gql.register()
        base = create(gql, user["token"])
        update(gql, user["token"], base, content=PARAGRAPHS.replace("First", "FIRST"))
        _sibling(services, base["id"], base["version"], content=PARAGRAPHS.replace("Last", "LAST"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            note = read(gql, user["token"], base["id"])
            if not note["conflicts"]:
                break
            time.sleep(0.1)
        assert note["conflicts"] == []
        assert note["content"] == "FIRST paragraph.\n\nMiddle paragraph.\n\nLAST paragraph."
    finally:
        app.extensions["notebook"].close()
