"""A production-style start: the production console script (`notebook-server`, FLASK_ENV unset,
gunicorn) as TWO app processes over THREE database nodes, and nothing else. No test code sets up
replication: the app processes' supervisors do (docs/replication.md, "Replication that runs
itself"). Then a deleted job comes back, and a node restarted with an EMPTY data directory gets
its databases, design documents and jobs back and is refilled.

The test only plays the process manager: it restarts a node that exited. pouchdb-server exits
when a running job document is deleted (server_differences D12), and every node here is
restarted after its data directory was deleted. Short periods come from the settings
(REPLICATION_RETRY_SECONDS=2).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devtools.local_server import OUTPUT_FILE_NAME, free_port
from notebook.database.design_docs import NOTES_DESIGN, database_names
from notebook.database.replication import NODE_LIST_ID, ReplicationManager, job_id
from tests.support.api_server import BIN, ServerProcess, clean_environment
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.integration

PREFIX = f"ps{uuid.uuid4().hex[:8]}_"
DATABASES = list(database_names(PREFIX).values())
NOTES = database_names(PREFIX)["notes"]
NODE_LIST_PATH = f"{database_names(PREFIX)['users']}/{quote(NODE_LIST_ID, safe='')}"
PERIOD = 2  # REPLICATION_RETRY_SECONDS of both app processes
# a job may wait out CouchDB 3's startup_jitter (up to 5 s) and a loaded machine: generous bounds
PATIENCE = 90.0

REGISTER = """mutation($email: String!) {
  register(email: $email, password: "correct horse battery") { accessToken } }"""
CREATE = """mutation($title: String!) {
  createNote(input: {title: $title, content: "written before the disk was lost"}) { id } }"""


class Deployment:
    """Three nodes, the set-up account, and two production app processes."""

    def __init__(
        self,
        nodes: NodeSet,
        user: str,
        password: str,
        apps: list[ServerProcess],
        env: dict[str, str],
        base: Path,
    ) -> None:
        self.nodes = nodes
        self.auth = (user, password)
        self.apps = apps
        self.env = env  # the first app's environment: what an operator's shell has
        self.base = base
        self.ready_at = 0.0  # when both apps answered /ready: figures are printed from there

    def get(self, index: int, path: str) -> tuple[int, Any]:
        """GET on one node with the set-up account; (0, None) while it does not answer."""
        try:
            answer = httpx.get(self.nodes[index].url + path, auth=self.auth, timeout=5)
        except httpx.TransportError:
            return 0, None
        return answer.status_code, answer.json()

    def send(self, index: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        answer = httpx.request(method, self.nodes[index].url + path, json=body, auth=self.auth, timeout=10)
        return answer.status_code, answer.json()

    def job_ids(self, index: int) -> list[str]:
        """The mesh jobs node `index` must host: one per database and other node (pushes)."""
        source = self.nodes[index].url
        return [
            job_id(db, source, target.url)
            for target in self.nodes
            if target.url != source
            for db in DATABASES
        ]

    def jobs_present(self, index: int) -> bool:
        status, body = self.get(index, "_replicator/_all_docs")
        if status != 200:
            return False
        present = {row["id"] for row in body["rows"]}
        return set(self.job_ids(index)) <= present

    def has_doc(self, index: int, db: str, doc_id: str) -> bool:
        return self.get(index, f"{db}/{quote(doc_id, safe='')}")[0] == 200

    def register(self, app: ServerProcess) -> str:
        email = f"p-{uuid.uuid4().hex[:8]}@example.com"
        return str(self.graphql(app, REGISTER, {"email": email})["register"]["accessToken"])

    def create_note(self, app: ServerProcess, token: str, title: str) -> str:
        return str(self.graphql(app, CREATE, {"title": title}, token)["createNote"]["id"])

    def graphql(self, app: ServerProcess, query: str, variables: dict[str, Any], token: str = "") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.post(
            f"{app.url}/graphql", json={"query": query, "variables": variables}, headers=headers, timeout=30
        )
        body = answer.json()
        assert answer.status_code == 200 and not body.get("errors"), body
        return body["data"]

    def restart_if_exited(self, index: int) -> bool:
        """What a process manager does; True when the node had exited and was started again."""
        node = self.nodes[index]
        if node.is_running:
            return False
        node.restart()
        return True


OPS_PASSWORD = f"pw-{uuid.uuid4().hex}"


def _credentials(nodes: NodeSet) -> tuple[str, str]:
    """A server admin on every node: production refuses to start without database credentials.
    pouchdb-server keeps it in config.json, CouchDB 3 (nodes.py) in its local.ini (nodes.py
    gives every node the same admin)."""
    if nodes.user:
        return nodes.user, nodes.password
    nodes.add_admin("ops", OPS_PASSWORD)
    return "ops", OPS_PASSWORD


def _data_directory(nodes: NodeSet, index: int) -> Path:
    node = nodes[index]
    if nodes.kind == "pouchdb":
        return Path(node.data_dir)
    return Path(node.script.state()["nodes"][index]["data"])


def wipe(nodes: NodeSet, index: int) -> int:
    """Delete the data of a stopped node: every database. pouchdb-server keeps its server
    configuration (the admin account, like CouchDB's local.ini) in config.json in the same
    directory; that one stays, as a real server's configuration would. Returns entries deleted."""
    directory = _data_directory(nodes, index)
    kept = {"config.json", OUTPUT_FILE_NAME} if nodes.kind == "pouchdb" else set()
    deleted = 0
    for entry in directory.iterdir():
        if entry.name in kept:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        deleted += 1
    return deleted


Accounts = Callable[[NodeSet, str, str], dict[str, str]]


@contextmanager
def deployed(base: Path, accounts: Accounts | None = None) -> Iterator[Deployment]:
    """Three nodes and two production app processes, stopped at the end. `accounts(nodes, admin,
    password)` prepares the nodes and returns more environment (a separate request account)."""
    nodes = start_nodes(base / "nodes", 3)
    nodes.require_process_control()
    apps: list[ServerProcess] = []
    envs: list[dict[str, str]] = []
    extra: dict[str, str] = {}
    try:
        user, password = _credentials(nodes)
        extra = accounts(nodes, user, password) if accounts else {}
        secret = "prod-" + uuid.uuid4().hex + uuid.uuid4().hex  # one deployment, one secret
        for preferred in (0, 1):
            port = free_port()
            others = [url for index, url in enumerate(nodes.urls) if index != preferred]
            settings = {
                "FLASK_HOST": "127.0.0.1",
                "SECRET_KEY": secret,
                "COUCHDB_URL": nodes.urls[preferred],
                "REPLICATION_NODES": ",".join(others),
                "COUCHDB_USER": user,
                "COUCHDB_PASSWORD": password,
                "COUCHDB_DB_PREFIX": PREFIX,
                "REPLICATION_RETRY_SECONDS": str(PERIOD),
                "REPLICATION_START_JITTER_SECONDS": "1",
                "HEALTH_PROBE_SECONDS": "0.5",
            }
            env = clean_environment(**{**settings, **extra})  # FLASK_ENV unset: production
            envs.append(env)
            command = [str(BIN / "notebook-server"), "--port", str(port), "--workers", "1"]
            apps.append(ServerProcess(command, env, base, base, port))
        for app in apps:
            app.wait_ready(timeout=120)
        made = Deployment(nodes, user, password, apps, envs[0], base)
        made.ready_at = time.monotonic()
        yield made
    finally:
        for app in apps:
            app.stop()
        nodes.stop()
    passwords = [password, *(value for key, value in extra.items() if key.endswith("PASSWORD"))]
    for app in apps:
        for secret_value in passwords:
            if len(secret_value) > 8:  # nodes.py's default "admin" is also a word in log lines
                assert secret_value not in app.stderr()  # the supervisors logged no credential


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployed(tmp_path_factory.mktemp("production-start")) as made:
        yield made


def test_the_mesh_sets_itself_up(deployment: Deployment) -> None:
    for index in range(3):
        wait_for(lambda i=index: deployment.jobs_present(i), PATIENCE, f"every job hosted on node{index}")
        for db in DATABASES:
            assert deployment.get(index, db)[0] == 200
    print(f"\nmesh complete {time.monotonic() - deployment.ready_at:.1f}s after both apps were ready")
    # and every link runs, as its node's replicator reports it (scheduler or job documents)
    observer = ReplicationManager(
        deployment.nodes.urls, DATABASES, user=deployment.auth[0], password=deployment.auth[1]
    )
    try:

        def every_link_running() -> bool:
            links = observer.status().links
            return len(links) == 3 * 2 * len(DATABASES) and all(link.state == "running" for link in links)

        wait_for(every_link_running, PATIENCE, "every link running")
    finally:
        observer.close()
    # the node list was recorded, from the environment, once for the whole deployment. A round
    # records it after its `ensure_mesh`, so the links may run a moment before it is there.
    wait_for(lambda: deployment.get(2, NODE_LIST_PATH)[0] == 200, PATIENCE, "the node list on node2")
    status, listed = deployment.get(2, NODE_LIST_PATH)
    assert (
        status == 200 and listed["version"] == 1 and sorted(listed["nodes"]) == sorted(deployment.nodes.urls)
    )
    # and the jobs replicate: a note made through the app reaches every node
    app = deployment.apps[1]
    note = deployment.create_note(app, deployment.register(app), "meshed")
    for index in range(3):
        wait_for(lambda i=index: deployment.has_doc(i, NOTES, note), PATIENCE, f"the note on node{index}")


def test_a_deleted_job_is_recreated(deployment: Deployment) -> None:
    wait_for(lambda: deployment.jobs_present(2), PATIENCE, "node2's jobs")
    doomed = job_id(NOTES, deployment.nodes[2].url, deployment.nodes[0].url)
    path = f"_replicator/{quote(doomed, safe='')}"
    status, job = deployment.get(2, path)
    assert status == 200
    status, answer = deployment.send(2, "DELETE", f"{path}?rev={job['_rev']}")
    assert status == 200, answer
    if deployment.nodes.kind == "pouchdb":
        # pouchdb-server exits after a running job's document is deleted (D12): a process
        # manager starts it again, and it comes back without the job
        wait_until(lambda: not deployment.nodes[2].is_running, 10)
    deployment.restart_if_exited(2)
    back = time.monotonic()

    def recreated() -> bool:
        code, doc = deployment.get(2, path)
        return code == 200 and doc["_rev"] != job["_rev"]

    wait_for(recreated, PATIENCE, "the deleted job written again by an app process")
    print(f"\ndeleted job written again {time.monotonic() - back:.1f}s after its node answered")
    # and it replicates again: a document written on node2 reaches node0 through that job
    probe = f"probe-{uuid.uuid4().hex}"
    assert deployment.send(2, "PUT", f"{NOTES}/{probe}", {"type": "probe"})[0] == 201
    wait_for(lambda: deployment.has_doc(0, NOTES, probe), PATIENCE, "node2's write on node0")


def test_a_node_restarted_empty_gets_everything_back(deployment: Deployment) -> None:
    app = deployment.apps[0]
    note = deployment.create_note(app, deployment.register(app), "before the disk loss")
    wait_for(lambda: deployment.has_doc(2, NOTES, note), PATIENCE, "the note on node2 before the loss")

    deployment.nodes[2].kill()
    assert wipe(deployment.nodes, 2) > 0
    assert not [entry for entry in _data_directory(deployment.nodes, 2).iterdir() if entry.is_dir()]
    deployment.nodes[2].restart()
    back = time.monotonic()

    # databases, design documents and node2's own jobs, re-created by the app processes
    for db in DATABASES:
        wait_for(lambda d=db: deployment.get(2, d)[0] == 200, PATIENCE, f"{db} on node2 again")
    wait_for(lambda: deployment.jobs_present(2), PATIENCE, "node2's jobs again")
    jobs_back = time.monotonic()
    design = f"{NOTES}/_design/{NOTES_DESIGN}"
    wait_for(lambda: deployment.get(2, design)[0] == 200, PATIENCE, "the notes design document on node2")
    # refilled: the note written before the loss is on it again
    wait_for(lambda: deployment.has_doc(2, NOTES, note), PATIENCE, "the old note on node2 again")
    refilled = time.monotonic() - back
    print(f"\nempty node: its jobs back after {jobs_back - back:.1f}s, the old note after {refilled:.1f}s")
    # and what is written on it now goes out again (its own jobs run)
    probe = f"probe-{uuid.uuid4().hex}"
    assert deployment.send(2, "PUT", f"{NOTES}/{probe}", {"type": "probe"})[0] == 201
    for index in (0, 1):
        wait_for(
            lambda i=index: deployment.has_doc(i, NOTES, probe), PATIENCE, f"node2's new write on node{index}"
        )
    for app in deployment.apps:
        assert app.process.poll() is None  # the supervisors survived the node loss


def nodes_command(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`notebook-server nodes ...` in the operator's environment (the first app's)."""
    return subprocess.run(
        [str(BIN / "notebook-server"), "nodes", *args],
        env=deployment.env,
        cwd=deployment.base,
        capture_output=True,
        text=True,
        timeout=300,
    )


def node_list(deployment: Deployment, index: int = 0) -> dict[str, Any]:
    status, listed = deployment.get(index, NODE_LIST_PATH)
    assert status == 200, (status, listed, [node.is_running for node in deployment.nodes])
    return dict(listed)


def adoptions(deployment: Deployment) -> list[int]:
    """Per app process, how often it took a changed node list over (its JSON log says so)."""
    return [app.stderr().count("replication nodes changed") for app in deployment.apps]


def test_adding_and_removing_a_node_is_one_command_each(deployment: Deployment) -> None:
    extra = start_nodes(deployment.base / "extra", 1)
    try:
        if not extra.user:
            extra.add_admin("ops", OPS_PASSWORD)
        url = extra.urls[0]
        app = deployment.apps[0]
        old_note = deployment.create_note(app, deployment.register(app), "before the node joined")
        before = adoptions(deployment)
        wait_for(lambda: deployment.get(0, NODE_LIST_PATH)[0] == 200, PATIENCE, "the node list recorded")
        version = node_list(deployment)["version"]

        added = nodes_command(deployment, "add", url, "--timeout", "60")
        assert added.returncode == 0, added.stderr
        assert f"{url}: added" in added.stdout and f"nodes (version {version + 1}):" in added.stdout
        assert deployment.auth[1] not in added.stdout + added.stderr
        listed = node_list(deployment)
        assert listed["version"] == version + 1 and url in listed["nodes"] and len(listed["nodes"]) == 4
        # both app processes take it over at their next round, whatever their environment says
        wait_for(
            lambda: all(now > then for now, then in zip(adoptions(deployment), before, strict=True)),
            PATIENCE,
            "both app processes adopting the new node list",
        )
        # the new node holds what was written before it joined
        wait_for(
            lambda: (
                httpx.get(f"{url}{NOTES}/{quote(old_note, safe='')}", auth=deployment.auth).status_code == 200
            ),
            PATIENCE,
            "an old note on the added node",
        )

        before = adoptions(deployment)
        removed = nodes_command(deployment, "remove", url)
        assert removed.returncode == 0, removed.stderr
        assert f"nodes (version {version + 2}):" in removed.stdout and url not in removed.stdout
        for index in range(3):  # pouchdb-server exits after its running jobs were deleted (D12)
            if deployment.nodes.kind == "pouchdb":
                wait_until(lambda i=index: not deployment.nodes[i].is_running, 5)
            deployment.restart_if_exited(index)
        wait_for(
            lambda: all(now > then for now, then in zip(adoptions(deployment), before, strict=True)),
            PATIENCE,
            "both app processes adopting the shorter node list",
        )
        gone = [job_id(db, node.url, url) for node in deployment.nodes for db in DATABASES]

        def no_job_to_the_removed_node() -> bool:
            present = set()
            for index in range(3):
                status, body = deployment.get(index, "_replicator/_all_docs")
                if status != 200:
                    return False
                present |= {row["id"] for row in body["rows"]}
            return not present & set(gone)

        wait_for(no_job_to_the_removed_node, PATIENCE, "no job pushing to the removed node")
        for index in range(3):
            wait_for(lambda i=index: deployment.jobs_present(i), PATIENCE, f"the mesh of node{index} intact")
    finally:
        extra.stop()


@pytest.mark.servers(
    "couchdb3",
    reason="pouchdb-server runs as an admin party here: no member account or enforced _security to restore",
)
def test_least_privilege_a_node_restarted_empty_gets_its_member_account_and_security_back(
    tmp_path: Path,
) -> None:
    """Set-up as a server admin, requests as a database member (docs/operations.md): after the
    disk loss, the member's CouchDB account and its place in every database's `_security` are
    back on the node, so requests that fail over to it authenticate."""
    member, member_password = "notebook-member", f"mpw-{uuid.uuid4().hex}"

    def member_account(nodes: NodeSet, admin: str, admin_password: str) -> dict[str, str]:
        doc = {"name": member, "password": member_password, "roles": [], "type": "user"}
        for node in nodes:
            status, body = node.request("PUT", f"_users/org.couchdb.user:{member}", doc)
            assert status in (201, 202), body
        return {
            "COUCHDB_USER": member,
            "COUCHDB_PASSWORD": member_password,
            "COUCHDB_ADMIN_USER": admin,
            "COUCHDB_ADMIN_PASSWORD": admin_password,
        }

    with deployed(tmp_path, member_account) as deployment:
        app = deployment.apps[0]
        note = deployment.create_note(app, deployment.register(app), "a member's note")
        wait_for(lambda: deployment.has_doc(2, NOTES, note), PATIENCE, "the note on node2")

        account = f"_users/{quote('org.couchdb.user:' + member, safe='')}"
        status, before = deployment.get(2, account)
        assert status == 200 and before["salt"]
        deployment.nodes[2].kill()
        assert wipe(deployment.nodes, 2) > 0
        deployment.nodes[2].restart()

        def account_created_again() -> bool:  # a new salt: written again, not the old one
            status, now = deployment.get(2, account)
            return status == 200 and now["salt"] != before["salt"]

        wait_for(account_created_again, PATIENCE, "the member account on node2 again")
        for db in DATABASES:
            wait_for(
                lambda d=db: (
                    member
                    in (deployment.get(2, f"{d}/_security")[1] or {}).get("members", {}).get("names", [])
                ),
                PATIENCE,
                f"the member in {db}'s _security on node2",
            )
        as_member = (member, member_password)

        def member_reads_the_note() -> bool:
            url = f"{deployment.nodes[2].url}{NOTES}/{quote(note, safe='')}"
            return httpx.get(url, auth=as_member, timeout=5).status_code == 200

        wait_for(member_reads_the_note, PATIENCE, "the member reading the old note on node2")
        # _replicator stays the admin's: the member may not read the credentials in it
        assert httpx.get(f"{deployment.nodes[2].url}_replicator/_all_docs", auth=as_member).status_code in (
            401,
            403,
        )
