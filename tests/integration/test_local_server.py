"""devtools.local_server: real pouchdb-server nodes on 127.0.0.1 free ports."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local_server import (
    LocalCluster,
    LocalNode,
    LocalNodeError,
    ensure_pouchdb_server,
    free_port,
)

pytestmark = pytest.mark.integration


def _get_root(url: str, timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "application/json"
        body = json.loads(response.read())
    assert isinstance(body, dict)
    return body


def _answers(url: str) -> bool:
    try:
        _get_root(url, timeout=2.0)
    except (OSError, urllib.error.URLError):
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def pouchdb_server() -> Path:
    return ensure_pouchdb_server()


@pytest.fixture
def cluster(tmp_path: Path, pouchdb_server: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "couchdb", nodes=2, executable=pouchdb_server)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_ensure_pouchdb_server_returns_the_pinned_executable(pouchdb_server: Path) -> None:
    assert pouchdb_server.name == "pouchdb-server"
    assert pouchdb_server.parent.parts[-2:] == ("node_modules", ".bin")
    assert os.access(pouchdb_server, os.X_OK)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_two_node_cluster_answers_json(cluster: LocalCluster, tmp_path: Path) -> None:
    assert len(cluster.nodes) == 2
    assert len(set(cluster.urls)) == 2
    for index, node in enumerate(cluster.nodes):
        assert node.url == f"http://127.0.0.1:{node.port}/"
        assert node.host == "127.0.0.1"
        assert node.data_dir == (tmp_path / "couchdb" / f"node{index}").resolve()
        assert node.is_running
        assert node.pid is not None and _pid_alive(node.pid)
        info = _get_root(node.url)
        assert info["version"] == "4.2.0"
        # Its config.json and log.txt land in its own data directory, not in the test's cwd.
        assert (node.data_dir / "config.json").exists()
    uuids = {_get_root(url)["uuid"] for url in cluster.urls}
    assert len(uuids) == 2


def test_killed_node_restarts_on_the_same_port_with_its_data(cluster: LocalCluster) -> None:
    node, other = cluster.nodes[1], cluster.nodes[0]
    status, _ = node.request("PUT", "failover_db")
    assert status == 201
    status, body = node.request("PUT", "failover_db/note:1", {"title": "kept across a crash"})
    assert status == 201, body

    port, url, old_pid = node.port, node.url, node.pid
    assert old_pid is not None
    node.kill()
    assert not node.is_running
    assert not _pid_alive(old_pid)
    assert not _answers(url)
    assert _answers(other.url), "killing one node must not affect the other"

    node.restart()
    assert node.port == port
    assert node.url == url
    assert node.is_running
    assert node.pid != old_pid
    assert _answers(url)
    status, body = node.request("GET", "failover_db/note:1")
    assert status == 200
    assert body["title"] == "kept across a crash"
    status, dbs = node.request("GET", "_all_dbs")
    assert status == 200
    assert "failover_db" in dbs


def test_cluster_stop_leaves_no_process(tmp_path: Path, pouchdb_server: Path) -> None:
    with LocalCluster(tmp_path, nodes=2, executable=pouchdb_server) as local:
        pids = [node.pid for node in local.nodes]
        urls = local.urls
        assert all(pid is not None and _pid_alive(pid) for pid in pids)
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(_answers(url) for url in urls)
    assert not any(node.is_running for node in local.nodes)
    local.stop()  # idempotent


def test_stopped_node_can_start_again(tmp_path: Path, pouchdb_server: Path) -> None:
    node = LocalNode(tmp_path / "single", executable=pouchdb_server)
    try:
        node.start()
        node.wait_ready()
        node.stop()
        assert not node.is_running
        node.restart()
        assert _answers(node.url)
    finally:
        node.stop()
    assert not node.is_running


def test_port_taken_by_someone_else_is_an_error(tmp_path: Path, pouchdb_server: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        node = LocalNode(tmp_path / "busy", port=port, executable=pouchdb_server)
        node.port_wait_seconds = 0.5
        with pytest.raises(LocalNodeError, match=str(port)):
            node.start()
        assert not node.is_running


def test_only_loopback_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        LocalNode(tmp_path, port=5984, host="0.0.0.0")
