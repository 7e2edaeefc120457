"""The database servers the integration suite runs against, chosen by NOTEBOOK_TEST_SERVER.

- ``pouchdb`` (default): pouchdb-server 4.2.0 nodes from node_modules (devtools.local_server).
- ``couchdb3``: Apache CouchDB 3.4 nodes started by ``nodes.py`` of the CouchDB 3 release in
  COUCHDB3_DIST (default ``../shared/couchdb3`` beside the repository), with admin credentials.
- ``external``: nodes someone runs their own way, named in NOTEBOOK_TEST_NODES as
  ``http://user:password@host:port,...`` (credentials may also come from NOTEBOOK_TEST_USER and
  NOTEBOOK_TEST_PASSWORD). They are never started, stopped or killed by the tests, so tests that
  kill nodes skip there.

Every fixture asks :func:`start_nodes` for N nodes and gets a :class:`NodeSet` with the same
interface whatever the server: plain URLs (no credentials), the credentials to pass to the app,
and per node ``kill()``, ``restart()``, ``is_running`` and a small JSON ``request()``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

from devtools.couchdb3 import CouchDB3NotFound, NodesScript, pid_alive
from devtools.local_server import LocalCluster, ensure_pouchdb_server
from tests.support.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVER_ENV = "NOTEBOOK_TEST_SERVER"
NODES_ENV = "NOTEBOOK_TEST_NODES"
KINDS = ("pouchdb", "couchdb3", "external")


def server_kind() -> str:
    """The server under test: NOTEBOOK_TEST_SERVER, default pouchdb."""
    kind = os.environ.get(SERVER_ENV, "").strip().lower() or "pouchdb"
    if kind not in KINDS:
        raise pytest.UsageError(f"{SERVER_ENV} must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


class TestNode(Protocol):
    """What a test may do with one node, on every server."""

    __test__ = False  # not a test class, despite its name

    @property
    def url(self) -> str: ...  # http://127.0.0.1:PORT/ (with the trailing slash, no credentials)

    @property
    def port(self) -> int: ...

    @property
    def is_running(self) -> bool: ...

    def kill(self) -> None: ...

    def restart(self, timeout: float = 30) -> None: ...

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]: ...


def _json_request(
    url: str, method: str, body: Any, timeout: float, user: str, password: str
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload or b"null")
        except ValueError:
            return exc.code, payload.decode(errors="replace")


# -- CouchDB 3 through nodes.py --------------------------------------------------------------------


class CouchDB3Node:
    """One node of a nodes.py directory; kill/restart go through nodes.py (by recorded PID)."""

    def __init__(self, script: NodesScript, index: int, user: str, password: str) -> None:
        self.script = script
        self.index = index
        self.user = user
        self.password = password
        node = script.state()["nodes"][index]
        self.url = node["url"].rstrip("/") + "/"
        # the HTTPS listener of a node started with a certificate (start_nodes(..., tls=...))
        self.https_url = node["https_url"].rstrip("/") + "/" if node.get("https_url") else None
        self.port = int(node["port"])
        self.log_path = Path(node["log"])

    def __repr__(self) -> str:
        return f"<CouchDB3Node {self.url}>"

    @property
    def pid(self) -> int | None:
        pid = self.script.state()["nodes"][self.index].get("pid")
        return int(pid) if pid else None

    @property
    def is_running(self) -> bool:
        return pid_alive(self.pid)

    @property
    def data_dir(self) -> Path:
        return Path(self.script.state()["nodes"][self.index]["data"])

    def kill(self) -> None:
        self.script("kill", "--node", str(self.index))

    def stop(self) -> None:
        self.script("stop-node", "--node", str(self.index))

    def restart(self, timeout: float = 30) -> None:
        """Start again on the same port and data; returns once GET /_up answers 200."""
        if self.is_running:
            self.stop()
        self.script("start-node", "--node", str(self.index), timeout=max(timeout, 120))

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        return _json_request(self.url + path.lstrip("/"), method, body, timeout, self.user, self.password)


def wipe_data(node: Any) -> None:
    """A lost disk: delete a stopped node's data directory and leave it empty (the node's
    configuration and admin account live outside it on both servers)."""
    assert not node.is_running, "stop or kill the node before deleting its data"
    data_dir = Path(node.data_dir)
    shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)


# -- nodes run by someone else ---------------------------------------------------------------------


class ExternalNode:
    """A node named in NOTEBOOK_TEST_NODES; the tests never control its process."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        self.port = urlsplit(url).port or (443 if url.startswith("https") else 80)
        self.user = user
        self.password = password

    @property
    def is_running(self) -> bool:
        return self.request("GET", "")[0] == 200

    def kill(self) -> None:
        pytest.skip("external nodes are not controlled by the tests (cannot be killed)")

    def restart(self, timeout: float = 30) -> None:
        pytest.skip("external nodes are not controlled by the tests (cannot be restarted)")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        try:
            return _json_request(self.url + path.lstrip("/"), method, body, timeout, self.user, self.password)
        except OSError as exc:
            return 0, str(exc)


def external_nodes() -> tuple[list[ExternalNode], str, str]:
    """The nodes of NOTEBOOK_TEST_NODES with their credentials removed from the URLs."""
    raw = [item.strip() for item in os.environ.get(NODES_ENV, "").split(",") if item.strip()]
    if not raw:
        raise pytest.UsageError(f"{SERVER_ENV}=external needs {NODES_ENV}=http://user:password@host:port,...")
    user = os.environ.get("NOTEBOOK_TEST_USER", "")
    password = os.environ.get("NOTEBOOK_TEST_PASSWORD", "")
    urls = []
    for item in raw:
        parts = urlsplit(item)
        if parts.username and not user:
            user, password = unquote(parts.username), unquote(parts.password or "")
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        urls.append(urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/", "", "")))
    return [ExternalNode(url, user, password) for url in urls], user, password


# -- one interface for all three -------------------------------------------------------------------

_started: list[NodeSet] = []


@atexit.register
def _stop_leftovers() -> None:
    """Nodes of a run that crashed past its fixtures' teardown are stopped here too."""
    for nodes in list(_started):
        with contextlib.suppress(Exception):
            nodes.stop()


class NodeSet:
    """N database nodes of the server under test, started together and stopped together."""

    def __init__(
        self,
        kind: str,
        nodes: list[Any],
        user: str = "",
        password: str = "",
        clustered: bool = False,
        local: LocalCluster | None = None,
        script: NodesScript | None = None,
    ) -> None:
        self.kind = kind
        self.nodes = nodes
        self.user = user
        self.password = password
        self.clustered = clustered
        self._local = local
        self._script = script

    def __repr__(self) -> str:
        return f"<NodeSet {self.kind} {self.urls}>"

    def __iter__(self) -> Iterator[Any]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int) -> Any:
        return self.nodes[index]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def controls_processes(self) -> bool:
        """False for external nodes: tests must not expect to kill or restart them."""
        return self.kind != "external"

    def require_process_control(self) -> None:
        if not self.controls_processes:
            pytest.skip("kills and restarts nodes, which external nodes do not allow")

    def credentials(self) -> dict[str, str]:
        """Config overrides that give the app this server's credentials."""
        return {"couchdb_user": self.user, "couchdb_password": self.password} if self.user else {}

    def environment(self) -> dict[str, str]:
        """The same as environment variables, for server processes."""
        return {"COUCHDB_USER": self.user, "COUCHDB_PASSWORD": self.password} if self.user else {}

    def version(self) -> str:
        status, body = self.nodes[0].request("GET", "")
        assert status == 200, body
        return str(body["version"])

    def add_admin(self, name: str, password: str) -> None:
        """Create one more server admin on every node (pouchdb-server: `_config`, CouchDB 3: the
        node-local `_config`)."""
        if not self.controls_processes:
            pytest.skip("would change the admins of external nodes")
        path = "_config/admins/" if self.kind == "pouchdb" else "_node/_local/_config/admins/"
        for node in self.nodes:
            status, body = node.request("PUT", path + name, password)
            assert status == 200, body
            # CouchDB 3 refuses the new admin (401) for a moment after the PUT answered
            accepted = wait_until(
                lambda n=node: _json_request(n.url + "_all_dbs", "GET", None, 5, name, password)[0] == 200, 15
            )
            assert accepted, f"{node.url} never accepted the new admin {name}"

    def stop(self) -> None:
        if self in _started:
            _started.remove(self)
        if self._local is not None:
            self._local.stop()
        if self._script is not None:
            self._script("stop")


def start_nodes(
    base_dir: Path,
    count: int = 1,
    cluster: bool = False,
    kind: str | None = None,
    skip_external: int = 0,
    tls: tuple[Path, Path] | None = None,
) -> NodeSet:
    """Start `count` nodes of the server under test in `base_dir` (stop them with .stop()).

    `cluster`: CouchDB 3 only, join them into ONE clustered CouchDB (nodes.py --cluster).
    `tls`: CouchDB 3 only, (certificate, key) PEM files: every node also serves HTTPS with them
    (nodes.py --tls-cert/--tls-key), at each node's `https_url`.
    `skip_external`: with external nodes, use the ones after the first `skip_external` (a test
    that needs a node besides those of its module fixture).
    """
    kind = kind or server_kind()
    if cluster and kind != "couchdb3":
        pytest.skip("a clustered CouchDB exists only on the couchdb3 server")
    if tls and kind != "couchdb3":
        pytest.skip("nodes serving HTTPS are started only on the couchdb3 server (nodes.py --tls-cert)")
    if kind == "pouchdb":
        ensure_pouchdb_server()
        local = LocalCluster(base_dir, nodes=count)
        local.start()
        made = NodeSet(kind, list(local.nodes), local=local)
    elif kind == "couchdb3":
        try:
            script = NodesScript(Path(base_dir).resolve())
        except CouchDB3NotFound as error:
            hint = "or run the suite against external nodes (docs/testing.md)"
            raise pytest.UsageError(f"{error}, {hint}") from error
        state = script.start(count, cluster, tls)
        user, password = state["user"], state["password"]
        nodes = [CouchDB3Node(script, index, user, password) for index in range(count)]
        made = NodeSet(kind, nodes, user, password, clustered=cluster, script=script)
    else:
        available, user, password = external_nodes()
        wanted = count + skip_external
        if len(available) < wanted:
            pytest.skip(f"needs {wanted} external nodes, {NODES_ENV} names {len(available)}")
        made = NodeSet(kind, available[skip_external:wanted], user, password)
    _started.append(made)
    return made
