"""Load for the node-loss tests: the real app process, writer threads that read their own writes
back, and checks of which acknowledged revisions a node holds.

A writer creates notes and edits its own notes only (each note has one author), and after every
acknowledged write it reads the note back through the app. It records every read that shows a
version older than its own last acknowledged one (read-your-writes), and every write the app
acknowledged (the ledger), so a test can check afterwards which acknowledged revisions survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from devtools.local_server import free_port
from tests.support.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]

NOTE_FIELDS = "id title content version"
CREATE = f"mutation($input: CreateNoteInput!) {{ createNote(input: $input) {{ {NOTE_FIELDS} }} }}"
UPDATE = f"""mutation($id: ID!, $input: UpdateNoteInput!, $version: String!) {{
  updateNote(id: $id, input: $input, version: $version) {{ {NOTE_FIELDS} }} }}"""
READ = f"query($id: ID!) {{ note(id: $id) {{ {NOTE_FIELDS} }} }}"
REGISTER = """mutation($email: String!, $password: String!) {
  register(email: $email, password: $password) { accessToken } }"""


def generation(version: str) -> int:
    return int(version.split("-", 1)[0])


@contextlib.contextmanager
def app_process(node_urls: list[str], prefix: str, log_path: Path, **env: str) -> Iterator[str]:
    """The production entry point (`python -m notebook.cli`) in testing mode on a free loopback
    port, over these nodes (the first preferred); yields its base URL once /ready answers."""
    port = free_port()
    environment = {
        **os.environ,
        "FLASK_ENV": "testing",
        "COUCHDB_URL": node_urls[0],
        "REPLICATION_NODES": ",".join(node_urls[1:]),
        "COUCHDB_DB_PREFIX": prefix,
        "HEALTH_PROBE_SECONDS": "0.25",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "notebook.cli", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base_url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, 60), log_path.read_text()
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_events(log_path: Path) -> list[dict[str, Any]]:
    """The database client's log lines (failover, failback, quorum) of an app process."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if str(entry.get("logger", "")).startswith("notebook.database.couch."):
                events.append(entry)
    return events


@dataclass
class Ack:
    version: str
    content: str
    at: float  # time.monotonic() of the acknowledgement


@dataclass
class Ledger:
    """What the app acknowledged, what failed, and every read older than its author's own write."""

    acks: dict[str, list[Ack]] = field(default_factory=dict)
    attempts: int = 0
    acknowledged: int = 0
    reads: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    stale_reads: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, note: Mapping[str, Any]) -> None:
        with self.lock:
            self.acknowledged += 1
            self.acks.setdefault(note["id"], []).append(
                Ack(note["version"], note["content"], time.monotonic())
            )

    def fail(self, code: str) -> None:
        with self.lock:
            self.failed[code] = self.failed.get(code, 0) + 1

    def acknowledged_before(self, moment: float) -> dict[str, str]:
        """The last version of each note acknowledged before `moment`."""
        with self.lock:
            last = {nid: [a for a in acks if a.at < moment] for nid, acks in self.acks.items()}
        return {nid: acks[-1].version for nid, acks in last.items() if acks}

    def wanted(self) -> dict[str, list[str]]:
        """Every acknowledged revision of every note."""
        with self.lock:
            return {nid: [a.version for a in acks] for nid, acks in self.acks.items()}


class Writer(threading.Thread):
    """Creates notes and edits its own, reading each back after it was acknowledged.

    A write that failed is not acknowledged; its note rests (0.5 s doubling to 8 s) before the
    next edit. After a CONFLICT or SERVICE_UNAVAILABLE (a write short of its quorum may still be
    kept) the writer reads the note and continues from what the server shows if that is its own
    last acknowledged or attempted content.
    """

    def __init__(self, index: int, base_url: str, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.ledger = ledger
        self.stop_event = stop
        self.token = ""
        self.notes: dict[str, dict[str, Any]] = {}  # id -> the last version this writer knows
        self.last_ack: dict[str, dict[str, Any]] = {}  # id -> its last acknowledged version
        self.resting: dict[str, float] = {}
        self.strikes: dict[str, int] = {}
        self.random = random.Random(index)
        self.error: BaseException | None = None

    def call(self, query: str, variables: dict[str, Any], token: str | None = None) -> tuple[Any, str | None]:
        with self.ledger.lock:
            self.ledger.attempts += 1
        try:
            response = self.http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token or self.token}"},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return None, type(exc).__name__
        if body.get("errors"):
            return None, body["errors"][0].get("extensions", {}).get("code", "UNKNOWN")
        return body["data"], None

    def register(self) -> None:
        email = f"w{self.index}-{uuid.uuid4().hex[:8]}@example.com"
        data, error = self.call(REGISTER, {"email": email, "password": "pw-" + "x" * 12}, token="-")
        assert error is None, error
        self.token = data["register"]["accessToken"]

    def run(self) -> None:
        try:
            step = 0
            while not self.stop_event.is_set():
                step += 1
                now = time.monotonic()
                ready = [nid for nid in self.notes if self.resting.get(nid, 0) <= now]
                if len(self.notes) < 3 or not ready or self.random.random() < 0.3:
                    self.create(step)
                else:
                    self.update(self.random.choice(ready), step)
                if step % 4 == 0 and self.last_ack:
                    self.read(self.random.choice(list(self.last_ack)))  # an older note of ours
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.http.close()

    def create(self, step: int) -> None:
        fields = {"title": f"w{self.index} note {step}", "content": f"w{self.index} step {step}"}
        data, error = self.call(CREATE, {"input": fields})
        if error is not None:
            self.ledger.fail(error)
            return
        self.acknowledged(data["createNote"])

    def update(self, note_id: str, step: int) -> None:
        held = self.notes[note_id]
        content = f"{held['content']}\nedit {step}"
        data, error = self.call(
            UPDATE, {"id": note_id, "input": {"content": content}, "version": held["version"]}
        )
        if error is None:
            self.acknowledged(data["updateNote"])
            self.strikes.pop(note_id, None)
            return
        self.ledger.fail(error)
        self.strikes[note_id] = strikes = self.strikes.get(note_id, 0) + 1
        self.resting[note_id] = time.monotonic() + min(8.0, 0.25 * 2**strikes)
        if error in ("CONFLICT", "SERVICE_UNAVAILABLE"):
            server = self.read(note_id)
            if server and server["content"] in (held["content"], content):
                self.notes[note_id] = server  # our own write, applied (twice, or short of quorum)

    def acknowledged(self, note: dict[str, Any]) -> None:
        self.ledger.ack(note)
        self.notes[note["id"]] = note
        self.last_ack[note["id"]] = note
        self.read(note["id"])  # read-your-writes, at once

    def read(self, note_id: str) -> dict[str, Any] | None:
        data, error = self.call(READ, {"id": note_id})
        with self.ledger.lock:
            self.ledger.reads += 1
        if error is not None and error != "NOT_FOUND":
            self.ledger.fail(f"read:{error}")
            return None
        note = (data or {}).get("note")
        self.check_not_older(note_id, note)
        return note

    def check_not_older(self, note_id: str, note: dict[str, Any] | None) -> None:
        """A read older than this writer's own last acknowledged write is recorded."""
        own = self.last_ack.get(note_id)
        if own is None:
            return
        if note is None:
            stale = "not found"
        elif generation(note["version"]) < generation(own["version"]):
            stale = "older generation"
        elif note["version"] != own["version"] and not note["content"].startswith(own["content"]):
            stale = "another branch without the acknowledged content"
        else:
            return
        with self.ledger.lock:
            self.ledger.stale_reads.append(
                {
                    "note": note_id,
                    "acknowledged": own["version"],
                    "read": note and note["version"],
                    "why": stale,
                }
            )


def run_writers(base_url: str, ledger: Ledger, count: int) -> tuple[list[Writer], threading.Event]:
    """Register `count` writers (before the clock starts) and start them."""
    stop = threading.Event()
    writers = [Writer(i, base_url, ledger, stop) for i in range(count)]
    for writer in writers:
        writer.register()
    return writers, stop


def stop_writers(writers: list[Writer], stop: threading.Event) -> None:
    stop.set()
    for writer in writers:
        writer.join(timeout=120)
    for writer in writers:
        assert not writer.is_alive(), f"{writer.name} hung"
        assert writer.error is None, f"{writer.name}: {writer.error!r}"


# -- what a node holds -----------------------------------------------------------------------------


def winners(node: Any, db: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Winning bodies (with `_conflicts`) of these documents on one node; missing ones left out."""
    status, body = node.request(
        "POST", f"{db}/_all_docs?include_docs=true&conflicts=true", {"keys": ids}, timeout=30
    )
    if status == 404:
        return {}
    assert status == 200, body
    return {row["key"]: row["doc"] for row in body["rows"] if row.get("doc")}


def leaf_paths(node: Any, db: str, ids: list[str]) -> dict[str, list[list[str]]]:
    """Per document on `node`, each leaf's revision path (leaf first). Not `_revs_diff`, which
    pouchdb-server answers with replicated ancestors as missing."""

    def paths(doc_id: str) -> list[list[str]]:
        status, leaves = node.request(
            "GET", f"{db}/{quote(doc_id, safe='')}?open_revs=all&revs=true", timeout=30
        )
        if status != 200 or not isinstance(leaves, list):
            return []
        found = []
        for leaf in leaves:
            revisions = (leaf.get("ok") or {}).get("_revisions", {})
            start = revisions.get("start", 0)
            found.append([f"{start - i}-{h}" for i, h in enumerate(revisions.get("ids", []))])
        return found

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(ids, pool.map(paths, ids), strict=True))


def holdings(nodes: list[Any], db: str, ids: list[str]) -> list[dict[str, set[str]]]:
    """Per node and document, the revisions the node holds: every revision in its leaves'
    histories, and every ancestor of those that another node's history names. A node may keep a
    shorter history (a revision pushed with its parent only, to a node that had lost the
    document): a descendant of a write, built on it, counts as holding it."""
    per_node = [leaf_paths(node, db, ids) for node in nodes]
    held: list[dict[str, set[str]]] = []
    for paths in per_node:
        mine: dict[str, set[str]] = {}
        for doc_id in ids:
            revs = {rev for path in paths[doc_id] for rev in path}
            for other in per_node:
                for path in other[doc_id]:
                    for i, rev in enumerate(path):
                        if rev in revs:
                            revs.update(path[i:])  # its ancestors
                            break
            mine[doc_id] = revs
        held.append(mine)
    return held


def histories(node: Any, db: str, ids: list[str]) -> dict[str, set[str]]:
    """Every revision in any leaf's history of each document on `node`."""
    return {
        doc_id: {rev for path in paths for rev in path} for doc_id, paths in leaf_paths(node, db, ids).items()
    }


def missing_revisions(nodes: list[Any], db: str, wanted: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The wanted revisions that none of `nodes` holds."""
    ids = sorted(wanted)
    held = [histories(node, db, ids) for node in nodes]
    missing = {nid: [rev for rev in wanted[nid] if not any(rev in h[nid] for h in held)] for nid in ids}
    return {nid: revs for nid, revs in missing.items() if revs}
