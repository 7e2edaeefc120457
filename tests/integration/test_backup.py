"""`notebook-server backup FILE` and `restore FILE`: a backup of one node restored into an empty
node of the server under test gives every account, notebook and note back, with the same
versions, history and search."""

from __future__ import annotations

import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

from config.settings import Config, load_config
from notebook.api.app import create_app
from tests.conftest import GraphQL
from tests.support.api_server import BIN, PROJECT_ROOT, clean_environment
from tests.support.servers import NodeSet, start_nodes

PASSWORD = "correct horse battery"
NOTES = """query { notes(first: 100) { totalCount edges { node {
    id title content tags version notebook { id name } revisions { id title } } } } }"""


def cli(config: Config, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_environment(
        FLASK_ENV="testing",
        COUCHDB_URL=url,
        COUCHDB_DB_PREFIX=config.db_prefix,
        COUCHDB_USER=config.couchdb_user,
        COUCHDB_PASSWORD=config.couchdb_password,
    )
    return subprocess.run([str(BIN / "notebook-server"), *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def everything(gql: GraphQL, token: str) -> list[dict[str, Any]]:
    connection = gql.data(NOTES, token=token)["notes"]
    assert connection["totalCount"] == len(connection["edges"])
    return sorted((edge["node"] for edge in connection["edges"]), key=lambda note: note["id"])


def login(gql: GraphQL, email: str) -> str:
    query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    return gql.data(query, {"e": email, "p": PASSWORD})["login"]["accessToken"]


def test_a_backup_restored_into_an_empty_node_has_every_note(
    config: Config, gql: GraphQL, couch_node: NodeSet, tmp_path: Path
) -> None:
    create = "mutation($i: CreateNoteInput!) { createNote(input: $i) { id version } }"
    update = """mutation($id: ID!, $v: String!, $i: UpdateNoteInput!) {
        updateNote(id: $id, version: $v, input: $i) { id version } }"""
    accounts = {}
    for index, count in enumerate((25, 12)):
        email = f"b{index}-{uuid.uuid4().hex[:8]}@example.com"
        token = gql.register(email, PASSWORD)["token"]
        accounts[email] = token
        for number in range(count):
            fields = {"title": f"n{number}", "content": f"word{number} ünïcode", "tags": ["t"]}
            note = gql.data(create, {"i": fields}, token)["createNote"]
            if number % 5 == 0:
                gql.data(
                    update, {"id": note["id"], "v": note["version"], "i": {"title": f"n{number} v2"}}, token
                )
    before = {email: everything(gql, token) for email, token in accounts.items()}
    assert [len(notes) for notes in before.values()] == [25, 12]

    backup = tmp_path / "notebook.backup.gz"
    made = cli(config, couch_node.urls[0], "backup", str(backup))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # password hashes inside
    assert config.couchdb_password not in made.stdout + made.stderr or not config.couchdb_password

    empty = start_nodes(tmp_path / "empty", 1)
    try:
        restored = cli(config, empty.urls[0], "restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        assert "documents restored from" in restored.stdout
        again = cli(config, empty.urls[0], "restore", str(backup))
        assert again.returncode == 1 and "already holds" in again.stderr

        app = create_app(load_config({"FLASK_ENV": "testing"}, couchdb_url=empty.urls[0],
                                     db_prefix=config.db_prefix, **empty.credentials()))  # fmt: skip
        try:
            on_empty = GraphQL(app.test_client())
            for email in accounts:
                token = login(on_empty, email)  # the account (and its password hash) is back
                assert everything(on_empty, token) == before[email]
                found = on_empty.data('{ notes(search: "word3") { totalCount } }', token=token)
                assert found["notes"]["totalCount"] == 1  # the search index is rebuilt from the notes
                first = before[email][0]
                change = {"id": first["id"], "v": first["version"], "i": {"title": "after"}}
                edited = on_empty.data(update, change, token)
                assert edited["updateNote"]["version"] != first["version"]  # versions carried over
        finally:
            app.extensions["notebook"].close()
    finally:
        empty.stop()
