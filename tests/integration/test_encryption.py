"""Encryption at rest, against real servers: no note text in any stored document of any node or
in any changes feed, search and tags still working on the blind index, tampered and moved
ciphertexts refused by name, production refusing missing or wrong keys, and key rotation while
two app instances keep writing (docs/security.md, "Encryption at rest")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Config, load_config
from devtools.local_server import free_port
from notebook.api.app import create_app
from notebook.database.design_docs import NOTES_DESIGN, database_names
from notebook.utils.key_store import create_key_files
from tests.conftest import GraphQL, drop_databases
from tests.support.api_server import (
    BIN,
    PROJECT_ROOT,
    clean_environment,
    readme_gunicorn_command,
)
from tests.support.cluster import PartitionableCluster, partitionable_cluster
from tests.support.servers import NodeSet
from tests.support.waiting import wait_until

NOTE = "id title content tags version revisions { content } conflicts { version }"
CREATE = f"mutation($n: CreateNoteInput!) {{ createNote(input: $n) {{ {NOTE} }} }}"
EDIT = f"""mutation($id: ID!, $c: String!, $v: String!) {{
  updateNote(id: $id, input: {{content: $c}}, version: $v) {{ {NOTE} }} }}"""
FIND = """query($s: String, $t: String) {
  notes(search: $s, tag: $t, first: 50) { totalCount edges { node { id } } } }"""


def marker() -> str:
    return f"mk{uuid.uuid4().hex[:12]}"


def raw_dump(node: Any, db: str) -> str:
    """Every document of `db` on one node as CouchDB stores it: every leaf of every document,
    conflicts included, and the changes feed with its documents."""
    parts = []
    rows = node.request("GET", f"{db}/_all_docs?include_docs=true&conflicts=true")[1]["rows"]
    for row in rows:
        parts.append(json.dumps(row["doc"]))
        if row["doc"].get("_conflicts"):
            doc_id = row["id"].replace(":", "%3A")
            parts.append(json.dumps(node.request("GET", f"{db}/{doc_id}?open_revs=all")[1]))
    parts.append(json.dumps(node.request("GET", f"{db}/_changes?include_docs=true&style=all_docs")[1]))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionableCluster]:
    with partitionable_cluster(tmp_path_factory.mktemp("encryption"), 2) as built:
        yield built


def test_no_note_text_in_any_stored_document_on_any_node(cluster: PartitionableCluster) -> None:
    gql = cluster.gql[0]
    user = gql.register()
    token = user["token"]
    title_word, content_word, tag, edit_word, side_a, side_b = (marker() for _ in range(6))
    note = gql.data(
        CREATE,
        {
            "n": {
                "title": f"Plan {title_word}",
                "content": f"Intro {content_word}.\n\nMiddle.\n\nEnd.",
                "tags": [tag],
            }
        },
        token,
    )["createNote"]
    note = gql.data(
        EDIT,
        {
            "id": note["id"],
            "c": f"Intro {content_word}.\n\nMiddle {edit_word}.\n\nEnd.",
            "v": note["version"],
        },
        token,
    )["updateNote"]
    assert wait_until(lambda: (cluster.doc_on(1, note["id"]) or {}).get("_rev") == note["version"], 30)
    assert wait_until(lambda: cluster.doc_on(1, user["user"]["id"], "users"), 30)
    # and its notebook, which the second app reads to let the owner edit there (CouchDB 3's
    # replicator writes its batches in parallel: the note can arrive before it)
    notebook_id = (cluster.doc_on(0, note["id"]) or {})["notebook_id"]
    assert wait_until(lambda: cluster.doc_on(1, notebook_id), 30)
    # a conflict, merged by the resolver: both sides' words must end up sealed too
    cluster.cut()
    try:
        base = note["content"]
        gql.data(
            EDIT,
            {"id": note["id"], "c": base.replace("Intro", f"Intro {side_a}"), "v": note["version"]},
            token,
        )
        cluster.gql[1].data(
            EDIT, {"id": note["id"], "c": base.replace("End", f"End {side_b}"), "v": note["version"]}, token
        )
    finally:
        cluster.heal()

    def merged() -> bool:
        cluster.settle()
        docs = [cluster.doc_on(n, note["id"]) or {} for n in range(2)]
        return all(
            side_a in d.get("content", "") and side_b in d.get("content", "") and not d.get("_conflicts")
            for d in docs
        )

    assert wait_until(merged, 90), "the conflict was merged on both nodes"
    markers = [title_word, content_word, tag, edit_word, side_a, side_b]
    for node in cluster.nodes.nodes:
        for db in database_names(cluster.prefix).values():
            dump = raw_dump(node, db).casefold()
            assert not [m for m in markers if m in dump], f"plaintext in {db} on {node.url}"
    # and the app still finds the note by every word and the tag, on both nodes
    for n in range(2):
        for word in (title_word, content_word, edit_word, side_a, side_b):
            found = cluster.gql[n].data(FIND, {"s": word}, token)["notes"]
            assert [e["node"]["id"] for e in found["edges"]] == [note["id"]], word
        assert cluster.gql[n].data(FIND, {"t": tag.upper()}, token)["notes"]["totalCount"] == 1
        assert {"tag": tag, "count": 1} in cluster.gql[n].data("{ tags { tag count } }", token=token)["tags"]
        shown = cluster.gql[n].data(
            f"query($id: ID!) {{ note(id: $id) {{ {NOTE} }} }}", {"id": note["id"]}, token
        )["note"]
        assert shown["title"] == f"Plan {title_word}" and shown["tags"] == [tag]
        assert any(edit_word not in r["content"] and content_word in r["content"] for r in shown["revisions"])


def _note(gql: GraphQL, token: str, title: str = "Sealed", content: str = "secret words") -> dict:
    return gql.data(CREATE, {"n": {"title": title, "content": content}}, token)["createNote"]


def _read_error(gql: GraphQL, token: str, note_id: str) -> dict:
    answer = gql("query($id: ID!) { note(id: $id) { id title content } }", {"id": note_id}, token)
    assert answer.get("errors"), answer
    return answer["errors"][0]


def test_a_tampered_ciphertext_is_an_error_naming_the_document(app: Any, gql: GraphQL) -> None:
    token = gql.register()["token"]
    note = _note(gql, token)
    notes = app.extensions["notebook"].databases.notes
    doc = notes.get(note["id"])
    body = doc["sealed"]
    flipped = body[:-5] + ("A" if body[-5] != "A" else "B") + body[-4:]
    notes.put({**doc, "sealed": flipped})
    error = _read_error(gql, token, note["id"])
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["documentId"] == note["id"] and note["id"] in error["message"]
    # a listing that holds it fails the same way: never an empty note in a page
    page = gql("{ notes(first: 10) { edges { node { title } } } }", token=token)
    assert page["errors"][0]["extensions"]["documentId"] == note["id"]


def test_a_ciphertext_moved_into_another_document_does_not_open(app: Any, gql: GraphQL) -> None:
    token = gql.register()["token"]
    first, second = _note(gql, token, "First", "one"), _note(gql, token, "Second", "two")
    notes = app.extensions["notebook"].databases.notes
    source, target = notes.get(first["id"]), notes.get(second["id"])
    notes.put({**target, "sealed": source["sealed"]})
    error = _read_error(gql, token, second["id"])
    assert error["extensions"]["documentId"] == second["id"]
    assert (
        gql.data("query($id: ID!) { note(id: $id) { content } }", {"id": first["id"]}, token)["note"][
            "content"
        ]
        == "one"
    )


def test_an_unknown_key_id_is_an_error_naming_the_document(app: Any, gql: GraphQL) -> None:
    token = gql.register()["token"]
    note = _note(gql, token)
    notes = app.extensions["notebook"].databases.notes
    doc = notes.get(note["id"])
    version, _, rest = doc["sealed"].partition(".")
    notes.put({**doc, "sealed": f"{version}.dk-000000000000.{rest.partition('.')[2]}"})
    error = _read_error(gql, token, note["id"])
    assert "dk-000000000000" in error["message"] and error["extensions"]["documentId"] == note["id"]


def test_encryption_off_is_explicit_and_logged(config: Config, capfd: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    plain = replace(config, encryption_enabled=False, db_prefix=f"c{uuid.uuid4().hex[:8]}_")
    app = create_app(plain)
    services = app.extensions["notebook"]
    try:
        assert "encryption at rest is OFF" in capfd.readouterr().err
        gql = GraphQL(app.test_client())
        note = _note(gql, gql.register()["token"], "Clear title")
        assert services.databases.notes.get(note["id"])["title"] == "Clear title"
    finally:
        services.stopping.set()
        drop_databases(services)
        services.close()


# -- production refuses keys it cannot use ------------------------------------------------------
PRODUCTION = {
    "SECRET_KEY": "prod-" + uuid.uuid4().hex + uuid.uuid4().hex,
    "COUCHDB_USER": "u" + uuid.uuid4().hex[:6],
    "COUCHDB_PASSWORD": "p" + uuid.uuid4().hex[:8],
}


def _refusal(couch_node: NodeSet, tmp_path: Path, **keys: str) -> tuple[int, str]:
    env = clean_environment(COUCHDB_URL=couch_node.urls[0], **PRODUCTION, **keys)
    done = subprocess.run(
        readme_gunicorn_command(free_port()),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("missing", ["master", "store"])
def test_production_refuses_to_start_without_its_key_files(
    couch_node: NodeSet, tmp_path: Path, missing: str
) -> None:
    create_key_files(tmp_path / "master.key", tmp_path / "store.json")
    (tmp_path / ("master.key" if missing == "master" else "store.json")).unlink()
    code, stderr = _refusal(
        couch_node,
        tmp_path,
        ENCRYPTION_KEY_PATH=str(tmp_path / "master.key"),
        KEY_STORE_PATH=str(tmp_path / "store.json"),
    )
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ("ENCRYPTION_KEY_PATH" in lines[0] or "KEY_STORE_PATH" in lines[0]), stderr


def test_production_refuses_a_wrong_master_key(couch_node: NodeSet, tmp_path: Path) -> None:
    create_key_files(tmp_path / "master.key", tmp_path / "store.json")
    create_key_files(tmp_path / "other.key", tmp_path / "other.json")
    code, stderr = _refusal(
        couch_node,
        tmp_path,
        ENCRYPTION_KEY_PATH=str(tmp_path / "other.key"),
        KEY_STORE_PATH=str(tmp_path / "store.json"),
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "wrong master key" in lines[0], stderr
    assert (tmp_path / "other.key").read_text().strip() not in stderr


def test_development_creates_its_key_files_with_mode_0600(couch_node: NodeSet, tmp_path: Path) -> None:
    master, store = tmp_path / "k" / "master.key", tmp_path / "k" / "store.json"
    config = load_config(
        {"FLASK_ENV": "development"},
        couchdb_url=couch_node.urls[0],
        db_prefix=f"d{uuid.uuid4().hex[:8]}_",
        encryption_key_path=str(master),
        key_store_path=str(store),
        startup_wait_seconds=30.0,
        **couch_node.credentials(),
    )
    app = create_app(config)
    services = app.extensions["notebook"]
    try:
        for path in (master, store):
            assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    finally:
        services.stopping.set()
        drop_databases(services)
        services.close()


# -- rotation while two app instances keep writing ---------------------------------------------
def _cli(config: Config, *args: str) -> subprocess.Popen[str]:
    env = clean_environment(
        FLASK_ENV="testing",
        COUCHDB_URL=config.couchdb_url,
        COUCHDB_USER=config.couchdb_user,
        COUCHDB_PASSWORD=config.couchdb_password,
        COUCHDB_DB_PREFIX=config.db_prefix,
        ENCRYPTION_KEY_PATH=config.encryption_key_path,
        KEY_STORE_PATH=config.key_store_path,
    )
    return subprocess.Popen(
        [str(BIN / "notebook-server"), "keys", *args],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _run(config: Config, *args: str) -> tuple[int, str]:
    process = _cli(config, *args)
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


class Writer(threading.Thread):
    """Edits its notes in turn through one app until told to stop; keeps every acknowledged
    content (a refused stale version is read again and retried, as a client would)."""

    def __init__(self, gql: GraphQL, token: str, notes: list[dict], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.gql, self.token, self.notes, self.stop_event = gql, token, notes, stop
        self.acked: dict[str, list[str]] = {n["id"]: [] for n in notes}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            edits = 0
            while not self.stop_event.is_set() and edits < 400:
                for i, note in enumerate(self.notes):
                    content = f"edit {edits} of {note['id']}"
                    answer = self.gql(
                        EDIT, {"id": note["id"], "c": content, "v": note["version"]}, self.token
                    )
                    if answer.get("errors"):
                        assert answer["errors"][0]["extensions"]["code"] == "CONFLICT", answer
                        current = self.gql.data(
                            "query($id: ID!) { note(id: $id) { version } }", {"id": note["id"]}, self.token
                        )
                        self.notes[i] = {**note, "version": current["note"]["version"]}
                        continue
                    self.notes[i] = answer["data"]["updateNote"]
                    self.acked[note["id"]].append(content)
                edits += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _old_key_left(app: Any, key_id: str) -> int:
    rows = app.extensions["notebook"].databases.notes.view(
        NOTES_DESIGN, "sealed_keys", key=key_id, group=True
    )["rows"]
    return rows[0]["value"] if rows else 0


def own_keys(config: Config, tmp_path: Path) -> Config:
    """The test's config with key files of its own (rotations must not touch the shared ones)
    and databases of its own."""
    from dataclasses import replace

    return replace(
        config,
        db_prefix=f"r{uuid.uuid4().hex[:8]}_",
        keyring_refresh_seconds=0.5,
        encryption_key_path=str(tmp_path / "keys" / "master.key"),
        key_store_path=str(tmp_path / "keys" / "store.json"),
    )


@pytest.fixture
def keyed_app(config: Config, tmp_path: Path) -> Iterator[Any]:
    app = create_app(own_keys(config, tmp_path))
    yield app
    services = app.extensions["notebook"]
    services.stopping.set()
    drop_databases(services)
    services.close()


def test_rotation_under_concurrent_writes_through_two_instances(config: Config, tmp_path: Path) -> None:
    config = own_keys(config, tmp_path)
    apps = [create_app(config), create_app(config)]
    gqls = [GraphQL(a.test_client()) for a in apps]
    stop = threading.Event()
    writers: list[Writer] = []
    try:
        token = gqls[0].register()["token"]
        notes = [_note(gqls[0], token, f"Note {i}", f"first {i}") for i in range(40)]
        # the notes every edit revises, with history, under the first key
        for i in range(40):
            notes[i] = gqls[0].data(
                EDIT, {"id": notes[i]["id"], "c": f"second {i}", "v": notes[i]["version"]}, token
            )["updateNote"]
        old_key = apps[0].extensions["notebook"].keyring.ring.active("data")[0]
        writers = [Writer(gqls[0], token, notes[:5], stop), Writer(gqls[1], token, notes[5:10], stop)]
        for writer in writers:
            writer.start()
        code, out = _run(config, "rotate")
        assert code == 0, out
        new_key = out.split("data key ")[1].split(";")[0]
        for app in apps:  # every instance writes with the new key within seconds
            assert wait_until(
                lambda a=app: a.extensions["notebook"].keyring.ring.active("data")[0] == new_key, 20
            )
        code, out = _run(config, "retire", old_key)
        assert code == 1 and "still use key" in out, out
        # re-encrypt one document per write, killed halfway, then run again to the end
        before = _old_key_left(apps[0], old_key)
        first = _cli(config, "reencrypt", "--batch", "1")
        assert wait_until(
            lambda: _old_key_left(apps[0], old_key) < before * 0.7 or first.poll() is not None, 120
        )
        assert first.poll() is None, "re-encryption ended before it could be killed"
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)  # reaps it and closes its pipes
        halfway = _old_key_left(apps[0], old_key)
        assert 0 < halfway < before
        code, out = _run(config, "reencrypt", "--batch", "20")
        assert code == 0, out
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
    for writer in writers:
        assert writer.error is None, repr(writer.error)
    assert _old_key_left(apps[0], old_key) == 0
    code, out = _run(config, "retire", old_key)
    assert code == 0 and "retired" in out, out
    # every note opens, through both instances, and every acknowledged edit is there
    for writer in writers:
        for note_id, contents in writer.acked.items():
            assert contents, "the writer made edits"
            for gql in gqls:
                shown = gql.data(
                    "query($id: ID!) { note(id: $id) { content revisions(first: 100) { content } } }",
                    {"id": note_id},
                    token,
                )["note"]
                assert shown["content"] == contents[-1]
                kept = {r["content"] for r in shown["revisions"]} | {shown["content"]}
                assert not [c for c in contents[-50:] if c not in kept]
    page = gqls[1].data("{ notes(first: 100) { totalCount edges { node { title } } } }", token=token)["notes"]
    assert page["totalCount"] == 40 and len(page["edges"]) == 40
    for app in apps:
        services = app.extensions["notebook"]
        services.stopping.set()
    drop_databases(apps[0].extensions["notebook"])
    for app in apps:
        app.extensions["notebook"].close()


def test_index_key_rotation_keeps_search_working_throughout(keyed_app: Any) -> None:
    app, gql = keyed_app, GraphQL(keyed_app.test_client())
    config = app.extensions["notebook"].config
    token = gql.register()["token"]
    word = marker()
    note = gql.data(CREATE, {"n": {"title": f"About {word}", "content": "x", "tags": ["Topic"]}}, token)[
        "createNote"
    ]
    services = app.extensions["notebook"]
    old_index = services.keyring.ring.active("index")[0]
    code, out = _run(config, "rotate", "--index")
    assert code == 0, out
    assert wait_until(lambda: services.keyring.ring.active("index")[0] != old_index, 20)
    later = gql.data(CREATE, {"n": {"title": f"Also {word}", "content": "y", "tags": ["topic"]}}, token)[
        "createNote"
    ]
    # notes under both index keys are found while nothing is re-indexed yet
    assert gql.data(FIND, {"s": word}, token)["notes"]["totalCount"] == 2
    assert gql.data(FIND, {"t": "TOPIC"}, token)["notes"]["totalCount"] == 2
    code, out = _run(config, "reencrypt")
    assert code == 0, out
    code, out = _run(config, "retire", old_index)
    assert code == 0, out
    found = gql.data(FIND, {"s": word}, token)["notes"]
    assert {e["node"]["id"] for e in found["edges"]} == {note["id"], later["id"]}
    assert gql.data("{ tags { tag count } }", token=token)["tags"][0]["count"] == 2


def test_master_key_rotation_rewraps_the_keys_only(
    app: Any, gql: GraphQL, config: Config, tmp_path: Path
) -> None:
    from dataclasses import replace

    token = gql.register()["token"]
    note = _note(gql, token, "Kept", "under the same data key")
    code, out = _run(config, "rotate-master", str(tmp_path / "new.key"), str(tmp_path / "new.json"))
    assert code == 0, out
    moved = replace(
        config, encryption_key_path=str(tmp_path / "new.key"), key_store_path=str(tmp_path / "new.json")
    )
    other = create_app(moved)
    try:
        shown = GraphQL(other.test_client()).data(
            "query($id: ID!) { note(id: $id) { content } }", {"id": note["id"]}, token
        )
        assert shown["note"]["content"] == "under the same data key"
        ring = json.loads((tmp_path / "new.json").read_text())
        assert {k["id"] for k in ring["keys"]} == {
            k.id for k in app.extensions["notebook"].keyring.ring.stored()
        }
    finally:
        other.extensions["notebook"].stopping.set()
        other.extensions["notebook"].close()


def test_resolvers_on_two_nodes_seal_one_identical_answer(cluster: PartitionableCluster) -> None:
    """Both nodes hold both leaves and settle them apart (cut): their sealed answers must be one
    revision, or replication would bring back a conflict that resolvers answer again forever."""
    gql, token = cluster.gql[0], cluster.gql[0].register()["token"]
    note = gql.data(CREATE, {"n": {"title": "Both", "content": "One.\n\nTwo.\n\nThree."}}, token)[
        "createNote"
    ]
    assert wait_until(lambda: (cluster.doc_on(1, note["id"]) or {}).get("_rev") == note["version"], 30)
    cluster.cut()
    try:
        gql.data(EDIT, {"id": note["id"], "c": "One A.\n\nTwo.\n\nThree.", "v": note["version"]}, token)
        cluster.gql[1].data(
            EDIT, {"id": note["id"], "c": "One.\n\nTwo.\n\nThree B.", "v": note["version"]}, token
        )
    finally:
        cluster.heal()
    assert wait_until(
        lambda: all(len((cluster.doc_on(n, note["id"]) or {}).get("_conflicts", [])) == 1 for n in range(2)),
        60,
    )
    cluster.cut()
    try:
        for app in cluster.apps:
            app.extensions["notebook"].resolver.resolve_pending()
        answers = [cluster.doc_on(n, note["id"]) or {} for n in range(2)]
    finally:
        cluster.heal()
    assert answers[0]["content"] == answers[1]["content"] == "One A.\n\nTwo.\n\nThree B."
    assert answers[0]["_rev"] == answers[1]["_rev"] and not answers[0].get("_conflicts")
