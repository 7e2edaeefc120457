"""Every operation of the schema, called by a notebook's OWNER, EDITOR and VIEWER, by a stranger,
anonymously, and by the owner through an API key of scope READ and of scope WRITE: the exact
outcome of each, and that a refused call changes nothing stored.

Each case gets a fresh notebook owned by Ada, shared with Bob (EDITOR) and Carol (VIEWER), with
one edited note in it; Dave is the stranger. Operations on the caller's own account run as a
fresh user holding the role, so that they cannot disturb the other cases.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from config.settings import load_config
from tests.conftest import GraphQL
from tests.support.servers import NodeSet

OK = "OK"
PERSONS = ("OWNER", "EDITOR", "VIEWER", "STRANGER", "ANONYMOUS")
KEY_CALLERS = ("KEY_READ", "KEY_WRITE")  # the owner, with an API key of that scope
CALLERS = PERSONS + KEY_CALLERS
PASSWORD = "correct horse battery"


def _outcomes(owner: str, editor: str, viewer: str, stranger: str, anonymous: str) -> dict[str, str]:
    return dict(zip(PERSONS, (owner, editor, viewer, stranger, anonymous), strict=True))


# what an API key may call, written out here (not read from services/permissions.py) so the
# test fails when the policy changes: READ every query a person may make of their own data,
# WRITE also the note and notebook mutations; nothing of accounts, keys or administration
KEY_READ_OPERATIONS = {
    "Query.me", "Query.notebooks", "Query.notebook", "Query.note", "Query.notes", "Query.tags",
    "Query.activity", "Query.myStats",
}  # fmt: skip
KEY_WRITE_OPERATIONS = KEY_READ_OPERATIONS | {
    "Mutation.createNotebook", "Mutation.updateNotebook", "Mutation.deleteNotebook",
    "Mutation.shareNotebook", "Mutation.unshareNotebook", "Mutation.createNote", "Mutation.updateNote",
    "Mutation.moveNote", "Mutation.trashNote", "Mutation.restoreNote", "Mutation.deleteNote",
    "Mutation.restoreNoteRevision", "Mutation.resolveNoteConflict", "Mutation.importNotes",
}  # fmt: skip
# operations whose credentials are their arguments: a key in the header changes nothing
MAKE_KEY = 'mutation($s: ApiKeyScope!) { createApiKey(name: "matrix", scope: $s) { secret apiKey { id } } }'
CREDENTIAL_OPERATIONS = {"Mutation.register", "Mutation.login", "Mutation.refreshToken", "Mutation.logout"}


def expected_outcome(case: Case, caller: str) -> str:
    if caller in PERSONS:
        return case.outcomes[caller]
    allowed = KEY_READ_OPERATIONS if caller == "KEY_READ" else KEY_WRITE_OPERATIONS
    if case.operation in CREDENTIAL_OPERATIONS or case.operation in allowed:
        return case.outcomes["OWNER"]
    return "FORBIDDEN"


PUBLIC = _outcomes(OK, OK, OK, OK, OK)
SIGNED_IN = _outcomes(OK, OK, OK, OK, "UNAUTHENTICATED")
READ = _outcomes(OK, OK, OK, "NOT_FOUND", "UNAUTHENTICATED")
WRITE = _outcomes(OK, OK, "FORBIDDEN", "NOT_FOUND", "UNAUTHENTICATED")
OWN = _outcomes(OK, "FORBIDDEN", "FORBIDDEN", "NOT_FOUND", "UNAUTHENTICATED")
ADMIN = _outcomes("FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "UNAUTHENTICATED")


@dataclass
class Scene:
    """What one case works on; `token` is the caller's (None when anonymous)."""

    caller: str
    role: str  # the caller's role in the notebook (an API key acts as the owner)
    token: str | None
    caller_id: str | None
    password: str
    notebook: str
    note: str
    revision: str
    target: str  # a notebook the caller may write, for moveNote (Ada's when the caller may not)
    email: str = ""
    refresh: str = ""
    conflict: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    operation: str
    query: str
    variables: Callable[[Scene], dict[str, Any]]
    outcomes: dict[str, str]
    check: Callable[[dict[str, Any], Scene], bool]
    account: bool = False  # acts on the caller's own account: the caller is a fresh user


def _field(name: str) -> Callable[[dict[str, Any], Scene], bool]:
    return lambda data, _: data[name] is not None


CASES = [
    # queries
    Case(
        "Query.me",
        "{ me { id } }",
        lambda s: {},
        PUBLIC,
        lambda d, s: (d["me"] or {}).get("id") == s.caller_id,
    ),
    Case(
        "Query.notebooks",
        "{ notebooks { id myRole } }",
        lambda s: {},
        SIGNED_IN,
        lambda d, s: (s.notebook in [nb["id"] for nb in d["notebooks"]]) == (s.role != "STRANGER"),
    ),
    Case(
        "Query.notebook",
        "query($id: ID!) { notebook(id: $id) { id myRole members { role } } }",
        lambda s: {"id": s.notebook},
        READ,
        lambda d, s: (
            d["notebook"]["myRole"] == s.role
            and sorted(m["role"] for m in d["notebook"]["members"]) == ["EDITOR", "OWNER", "VIEWER"]
        ),
    ),
    Case(
        "Query.note",
        "query($id: ID!) { note(id: $id) { id title revisions { id } } }",
        lambda s: {"id": s.note},
        READ,
        lambda d, s: d["note"]["id"] == s.note and len(d["note"]["revisions"]) == 1,
    ),
    Case(
        "Query.notes",
        "query($nb: ID) { notes(notebookId: $nb) { totalCount edges { node { id } } } }",
        lambda s: {"nb": s.notebook},
        READ,
        lambda d, s: (
            [e["node"]["id"] for e in d["notes"]["edges"]] == [s.note] and d["notes"]["totalCount"] == 1
        ),
    ),
    Case(
        "Query.tags",
        "{ tags { tag count } }",
        lambda s: {},
        SIGNED_IN,
        lambda d, s: isinstance(d["tags"], list),
    ),
    Case(
        "Query.activity",
        "query($nb: ID) { activity(notebookId: $nb) { edges { cursor } } }",
        lambda s: {"nb": s.notebook},
        READ,
        lambda d, s: len(d["activity"]["edges"]) > 0,  # the notebook was created and shared
    ),
    Case(
        "Query.myStats",
        "{ myStats { notes notesCreatedPerDay { count } } }",
        lambda s: {},
        SIGNED_IN,
        lambda d, s: len(d["myStats"]["notesCreatedPerDay"]) == 30,
    ),
    Case("Query.systemStats", "{ systemStats { users } }", lambda s: {}, ADMIN, _field("systemStats")),
    Case(
        "Query.securityEvents",
        "{ securityEvents { edges { cursor } } }",
        lambda s: {},
        ADMIN,
        _field("securityEvents"),
    ),
    Case(
        "Query.replicationStatus",
        "{ replicationStatus { healthy } }",
        lambda s: {},
        ADMIN,
        _field("replicationStatus"),
    ),
    Case(
        "Query.apiKeys",
        "{ apiKeys { id name scope } }",
        lambda s: {},
        SIGNED_IN,
        lambda d, s: s.extra["api_key_id"] in [k["id"] for k in d["apiKeys"]],
    ),
    # accounts
    Case(
        "Mutation.register",
        "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { user { email } } }",
        lambda s: {"e": s.email, "p": PASSWORD},
        PUBLIC,
        lambda d, s: d["register"]["user"]["email"] == s.email,
    ),
    Case(
        "Mutation.login",
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
        lambda s: {"e": "erin@example.com", "p": PASSWORD},
        PUBLIC,
        lambda d, s: bool(d["login"]["accessToken"]),
    ),
    Case(
        "Mutation.refreshToken",
        "mutation($t: String!) { refreshToken(refreshToken: $t) { refreshToken } }",
        lambda s: {"t": s.refresh},
        PUBLIC,
        lambda d, s: d["refreshToken"]["refreshToken"] != s.refresh,
    ),
    Case(
        "Mutation.logout",
        "mutation($t: String!) { logout(refreshToken: $t) }",
        lambda s: {"t": s.refresh},
        PUBLIC,
        lambda d, s: d["logout"] is True,
    ),
    Case(
        "Mutation.changePassword",
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: "
        "$n) { accessToken } }",
        lambda s: {"c": s.password, "n": "another long password"},
        SIGNED_IN,
        lambda d, s: bool(d["changePassword"]["accessToken"]),
        account=True,
    ),
    Case(
        "Mutation.logoutEverywhere",
        "mutation { logoutEverywhere }",
        lambda s: {},
        SIGNED_IN,
        lambda d, s: d["logoutEverywhere"] is True,
        account=True,
    ),
    Case(
        # only an account displaced from its address by a partition has one to confirm
        # (test_partitioned_registration.py); every other caller is told so
        "Mutation.confirmNewEmail",
        'mutation { confirmNewEmail(email: "moved@example.com") { id } }',
        lambda s: {},
        _outcomes("BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT", "UNAUTHENTICATED"),
        _field("confirmNewEmail"),
        account=True,
    ),
    Case(
        "Mutation.deleteAccount",
        "mutation($p: String!) { deleteAccount(password: $p) }",
        lambda s: {"p": s.password},
        SIGNED_IN,
        lambda d, s: d["deleteAccount"] is True,
        account=True,
    ),
    Case(
        "Mutation.createApiKey",
        'mutation { createApiKey(name: "ci", scope: READ) { secret apiKey { id scope } } }',
        lambda s: {},
        SIGNED_IN,
        lambda d, s: (
            d["createApiKey"]["secret"].startswith("nbk_") and d["createApiKey"]["apiKey"]["scope"] == "READ"
        ),
    ),
    Case(
        "Mutation.revokeApiKey",
        "mutation($id: ID!) { revokeApiKey(id: $id) }",
        lambda s: {"id": s.extra["api_key_id"]},
        SIGNED_IN,
        lambda d, s: d["revokeApiKey"] is True,
    ),
    # notebooks
    Case(
        "Mutation.createNotebook",
        'mutation { createNotebook(input: {name: "New"}) { id myRole } }',
        lambda s: {},
        SIGNED_IN,
        lambda d, s: d["createNotebook"]["myRole"] == "OWNER",
    ),
    Case(
        "Mutation.updateNotebook",
        'mutation($id: ID!, $v: String!) { updateNotebook(id: $id, input: {name: "Renamed"}, '
        "version: $v) { name } }",
        lambda s: {"id": s.notebook, "v": s.extra["notebook_version"]},
        OWN,
        lambda d, s: d["updateNotebook"]["name"] == "Renamed",
    ),
    Case(
        "Mutation.deleteNotebook",
        "mutation($id: ID!) { deleteNotebook(id: $id) }",
        lambda s: {"id": s.notebook},
        OWN,
        lambda d, s: d["deleteNotebook"] is True,
    ),
    Case(
        "Mutation.shareNotebook",
        'mutation($id: ID!) { shareNotebook(id: $id, email: "erin@example.com", role: VIEWER) { '
        "members { role } } }",
        lambda s: {"id": s.notebook},
        OWN,
        lambda d, s: len(d["shareNotebook"]["members"]) == 4,
    ),
    Case(
        "Mutation.unshareNotebook",
        "mutation($id: ID!, $u: ID!) { unshareNotebook(id: $id, userId: $u) { members { role } } }",
        lambda s: {"id": s.notebook, "u": s.extra["viewer_id"]},
        OWN,
        lambda d, s: sorted(m["role"] for m in d["unshareNotebook"]["members"]) == ["EDITOR", "OWNER"],
    ),
    # notes
    Case(
        "Mutation.createNote",
        'mutation($nb: ID!) { createNote(input: {notebookId: $nb, title: "new"}) { id updatedBy { id } } }',
        lambda s: {"nb": s.notebook},
        WRITE,
        lambda d, s: d["createNote"]["updatedBy"]["id"] == s.caller_id,
    ),
    Case(
        "Mutation.updateNote",
        'mutation($id: ID!, $v: String!) { updateNote(id: $id, input: {title: "t2"}, version: '
        "$v) { updatedBy { id } } }",
        lambda s: {"id": s.note, "v": s.extra["note_version"]},
        WRITE,
        lambda d, s: d["updateNote"]["updatedBy"]["id"] == s.caller_id,
    ),
    Case(
        "Mutation.moveNote",
        "mutation($id: ID!, $nb: ID!) { moveNote(id: $id, notebookId: $nb) { notebook { id } } }",
        lambda s: {"id": s.note, "nb": s.target},
        WRITE,
        lambda d, s: d["moveNote"]["notebook"]["id"] == s.target,
    ),
    Case(
        "Mutation.trashNote",
        "mutation($id: ID!) { trashNote(id: $id) { trashedAt } }",
        lambda s: {"id": s.note},
        WRITE,
        lambda d, s: d["trashNote"]["trashedAt"] is not None,
    ),
    Case(
        "Mutation.restoreNote",
        "mutation($id: ID!) { restoreNote(id: $id) { trashedAt } }",
        lambda s: {"id": s.note},
        WRITE,
        lambda d, s: d["restoreNote"]["trashedAt"] is None,
    ),
    Case(
        "Mutation.deleteNote",
        "mutation($id: ID!) { deleteNote(id: $id) }",
        lambda s: {"id": s.note},
        OWN,
        lambda d, s: d["deleteNote"] is True,
    ),
    Case(
        "Mutation.restoreNoteRevision",
        "mutation($id: ID!, $r: ID!) { restoreNoteRevision(id: $id, revisionId: $r) { title } }",
        lambda s: {"id": s.note, "r": s.revision},
        WRITE,
        lambda d, s: d["restoreNoteRevision"]["title"] == "first",
    ),
    Case(
        "Mutation.resolveNoteConflict",
        "mutation($id: ID!, $k: String!) { resolveNoteConflict(id: $id, keepVersion: $k) { "
        "title conflicts { version } } }",
        lambda s: {"id": s.note, "k": s.conflict},
        WRITE,
        lambda d, s: d["resolveNoteConflict"] == {"title": "from another node", "conflicts": []},
    ),
    Case(
        "Mutation.importNotes",
        'mutation($nb: ID!) { importNotes(notebookId: $nb, notes: [{title: "imported"}]) { imported } }',
        lambda s: {"nb": s.notebook},
        WRITE,
        lambda d, s: d["importNotes"]["imported"] == 1,
    ),
]


class Matrix:
    """One app and its users for the whole module."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.services = app.extensions["notebook"]
        self.gql = GraphQL(app.test_client())
        self.users = {
            name: self.gql.register(f"{name}-{uuid.uuid4().hex[:6]}@example.com")
            for name in ("ada", "bob", "carol", "dave")
        }
        self.gql.register("erin@example.com")
        self._read_only: tuple[dict[str, Any], dict[str, Any]] | None = None

    def token(self, name: str) -> str:
        return self.users[name]["token"]

    def do(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        return self.gql.data(query, variables, token=token)

    def share(self, notebook: str, email: str, role: str) -> None:
        self.do(
            "mutation($id: ID!, $e: String!, $r: Role!) { shareNotebook(id: $id, email: $e, "
            "role: $r) { id } }",
            {"id": notebook, "e": email, "r": role},
            self.token("ada"),
        )

    def _notebook_with_note(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A notebook of Ada's shared with Bob (EDITOR) and Carol (VIEWER), with an edited note."""
        ada = self.token("ada")
        notebook = self.do('mutation { createNotebook(input: {name: "Team"}) { id version } }', token=ada)
        nb = notebook["createNotebook"]["id"]
        self.share(nb, self.users["bob"]["user"]["email"], "EDITOR")
        self.share(nb, self.users["carol"]["user"]["email"], "VIEWER")
        note = self.do(
            'mutation($nb: ID!) { createNote(input: {notebookId: $nb, title: "first"}) { id version } }',
            {"nb": nb},
            ada,
        )["createNote"]
        note = self.do(
            'mutation($id: ID!, $v: String!) { updateNote(id: $id, input: {title: "second"}, '
            "version: $v) { id version revisions { id } } }",
            {"id": note["id"], "v": note["version"]},
            ada,
        )["updateNote"]
        return notebook, note

    def scene(self, case: Case, caller: str) -> Scene:
        # queries change nothing: they share one notebook; every mutation case gets a fresh one
        if case.operation.startswith("Query."):
            self._read_only = self._read_only or self._notebook_with_note()
            notebook, note = self._read_only
        else:
            notebook, note = self._notebook_with_note()
        nb = notebook["createNotebook"]["id"]
        ada = self.token("ada")
        names = {"OWNER": "ada", "EDITOR": "bob", "VIEWER": "carol", "STRANGER": "dave", "ANONYMOUS": None,
                 "KEY_READ": "ada", "KEY_WRITE": "ada"}  # fmt: skip
        name = names[caller]
        member = self.users[name] if name else None
        password = PASSWORD
        if case.account and caller != "ANONYMOUS":
            member = self.gql.register(f"acct-{uuid.uuid4().hex[:8]}@example.com")
            if caller in ("EDITOR", "VIEWER"):
                self.share(nb, member["user"]["email"], caller)
        own_default = (
            self.do("{ me { id } notebooks(first: 1) { id } }", token=member["token"])["notebooks"][0]["id"]
            if member and caller != "VIEWER"
            else self.do("{ notebooks(first: 1) { id } }", token=ada)["notebooks"][0]["id"]
        )
        token = member["token"] if member else None
        api_key_id = ""
        if member:  # every signed-in caller has a key of its own (apiKeys, revokeApiKey)
            scope = "WRITE" if caller == "KEY_WRITE" else "READ"
            made = self.do(
                MAKE_KEY,
                {"s": scope},
                token,
            )["createApiKey"]
            api_key_id = made["apiKey"]["id"]
            if caller in KEY_CALLERS:
                token = made["secret"]
                self.do("{ me { id } }", token=token)  # its first use is recorded now, not in the case
        scene = Scene(
            caller=caller,
            role="OWNER" if caller in KEY_CALLERS else caller,
            token=token,
            caller_id=member["user"]["id"] if member else None,
            password=password,
            notebook=nb,
            note=note["id"],
            revision=note["revisions"][0]["id"],
            target=own_default,
            email=f"new-{uuid.uuid4().hex[:8]}@example.com",
            extra={
                "notebook_version": notebook["createNotebook"]["version"],
                "note_version": note["version"],
                "viewer_id": self.users["carol"]["user"]["id"],
                "api_key_id": api_key_id,
            },
        )
        if case.operation in ("Mutation.refreshToken", "Mutation.logout"):
            scene.refresh = self.do(
                'mutation { login(email: "erin@example.com", password: "correct horse battery") '
                "{ refreshToken } }"
            )["login"]["refreshToken"]
        if case.operation == "Mutation.deleteNote":
            self.do("mutation($id: ID!) { trashNote(id: $id) { id } }", {"id": note["id"]}, ada)
        if case.operation == "Mutation.resolveNoteConflict":
            scene.conflict = self._conflict(note["id"])
        return scene

    def _conflict(self, note_id: str) -> str:
        """A competing leaf, as replication from another node would leave it."""
        db, repo = self.services.databases.notes, self.services.notes.notes
        stored = db.get(note_id, revs=True)
        generation = stored["_revisions"]["start"]
        leaf = uuid.uuid4().hex
        note = repo.from_doc(stored)
        note.title = "from another node"
        doc = {**repo.to_doc(note), "_revisions": stored["_revisions"], "hlc": stored["hlc"]}
        doc["_rev"] = f"{generation}-{leaf}"
        doc["_revisions"] = {"start": generation, "ids": [leaf, *doc["_revisions"]["ids"][1:]]}
        db.bulk_docs([doc], new_edits=False)
        return doc["_rev"]

    def snapshot(self) -> dict[str, Any]:
        """Every document of every database (notes, users, activity, throttle), by id and
        revision: a refused call writes nothing, not even an activity record or a counted attempt."""
        state = {}
        for db in self.services.databases.all():
            rows = self.services.couch.request("GET", f"{quote(db.name, safe='')}/_all_docs")["rows"]
            state[db.name] = ({row["id"]: row["value"]["rev"] for row in rows}, db.info()["update_seq"])
        return state


@pytest.fixture(scope="module")
def matrix(couch_node: NodeSet) -> Iterator[Matrix]:
    from notebook.api.app import create_app

    config = load_config(
        {"FLASK_ENV": "testing"},
        couchdb_url=couch_node.urls[0],
        db_prefix=f"m{uuid.uuid4().hex[:10]}_",
        max_api_keys_per_user=10_000,  # every scene makes one for its caller
        **couch_node.credentials(),
    )
    app = create_app(config)
    yield Matrix(app)
    app.extensions["notebook"].close()


def test_the_matrix_covers_every_operation() -> None:
    from notebook.api.graphql_api import build_schema

    schema = build_schema()
    fields = {
        f"{root.name}.{name}"
        for root in (schema.query_type, schema.mutation_type)
        if root
        for name in root.fields
    }
    assert {case.operation for case in CASES} == fields


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.operation)
def test_permission_matrix(matrix: Matrix, case: Case, caller: str) -> None:
    scene = matrix.scene(case, caller)
    expected = expected_outcome(case, caller)
    before = matrix.snapshot()
    body = matrix.gql(case.query, case.variables(scene), token=scene.token)
    if expected == OK:
        assert not body.get("errors"), body
        assert case.check(body["data"], scene), body
    else:
        assert body.get("errors"), body
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected], body
        assert matrix.snapshot() == before, "a refused call changed the database"


def test_admins_may_call_the_admin_operations(matrix: Matrix) -> None:
    admin = matrix.gql.register(f"root-{uuid.uuid4().hex[:6]}@example.com")
    matrix.services.auth.set_admin(admin["user"]["email"])
    data = matrix.do(
        """{ systemStats { users } replicationStatus { healthy }
             securityEvents { edges { node { action } } } }""",
        token=admin["token"],
    )
    assert data["replicationStatus"]["healthy"] in (True, False)
    assert data["systemStats"]["users"] >= 4  # the matrix's people and this admin
    actions = [edge["node"]["action"] for edge in data["securityEvents"]["edges"]]
    assert "security.admin_granted" in actions
    client = matrix.app.test_client()
    assert (
        client.get(
            "/api/replication/status", headers={"Authorization": f"Bearer {admin['token']}"}
        ).status_code
        == 200
    )
    user = matrix.token("ada")
    answer = client.get("/api/replication/status", headers={"Authorization": f"Bearer {user}"})
    assert (answer.status_code, answer.get_json()["errors"][0]["extensions"]["code"]) == (403, "FORBIDDEN")
    answer = client.post("/api/replication/setup")
    assert (answer.status_code, answer.get_json()["errors"][0]["extensions"]["code"]) == (
        401,
        "UNAUTHENTICATED",
    )
    assert client.get("/api/openapi.json").status_code == 200
    # a CORS preflight runs no route, so it needs no token; the request after it does
    assert client.options("/api/replication/status").status_code == 200
    answer = client.head("/api/replication/status")
    assert answer.status_code == 401
