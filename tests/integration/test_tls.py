"""TLS from the app to CouchDB and between the nodes, on real CouchDB 3 nodes serving HTTPS.

A throwaway CA made here signs a certificate for 127.0.0.1; `nodes.py start --tls-cert/--tls-key`
gives every node an HTTPS listener with it, and every node's replicator is told to verify its
peers against that CA (`[replicator] verify_ssl_certificates`, docs/security.md). Then:

- the app runs over the nodes' https:// URLs with verification on (COUCHDB_CA_FILE): register,
  create a note, read it back;
- the replication mesh the app's manager sets up names the https:// URLs, and converges;
- failover still works: the preferred node is killed and the app keeps serving;
- a node presenting a certificate of another CA is refused with an error naming that node, by
  the app's client and by the replicator.

CouchDB 3 only: pouchdb-server serves no HTTPS. The certificate checks that need no database
(host name mismatch, a server speaking no TLS) run on every server against a small loopback TLS
server made here.
"""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Config, load_config
from notebook.database.couch import CouchDBClient, DatabaseUnavailable
from notebook.database.couch.tls import CouchTLS
from notebook.database.design_docs import database_names
from notebook.database.replication import ReplicationManager
from tests.conftest import GraphQL, drop_databases
from tests.support.certificates import CertificateAuthority, make_ca
from tests.support.servers import NodeSet, start_nodes
from tests.support.waiting import wait_for, wait_until

COUCHDB3_ONLY = pytest.mark.servers("couchdb3", reason="pouchdb-server serves no HTTPS (nodes.py --tls-cert)")
NOTE = "id title content"
CREATE = f"mutation($input: CreateNoteInput!) {{ createNote(input: $input) {{ {NOTE} }} }}"
READ = f"query($id: ID!) {{ note(id: $id) {{ {NOTE} }} }}"


@dataclass
class TLSNodes:
    nodes: NodeSet
    ca: CertificateAuthority
    https_urls: list[str]

    @property
    def tls(self) -> CouchTLS:
        return CouchTLS(ca_file=str(self.ca.cert))

    def config(self, prefix: str, **overrides: Any) -> Config:
        return load_config(
            {"FLASK_ENV": "testing"},
            couchdb_url=self.https_urls[0],
            replication_nodes=tuple(self.https_urls[1:]),
            couchdb_ca_file=str(self.ca.cert),
            db_prefix=prefix,
            health_probe_seconds=0.25,
            **self.nodes.credentials(),
            **overrides,
        )

    def https(self, index: int, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request to one node's HTTPS listener, verified against the test's CA."""
        with httpx.Client(verify=ssl.create_default_context(cafile=str(self.ca.cert)), timeout=10) as http:
            return http.request(
                method, self.https_urls[index] + path, json=body, auth=(self.nodes.user, self.nodes.password)
            )


@pytest.fixture(scope="module")
def tls_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSNodes]:
    certs = tmp_path_factory.mktemp("tls-certs")
    ca = make_ca(certs, "notebook-test-ca")
    server = ca.issue(certs, "couchdb-node")
    nodes = start_nodes(tmp_path_factory.mktemp("tls-nodes"), 2, tls=(server.cert, server.key))
    try:
        nodes.require_process_control()
        https_urls = [node.https_url for node in nodes]
        assert all(url and url.startswith("https://127.0.0.1:") for url in https_urls), https_urls
        for node in nodes:
            # what docs/security.md tells operators: the replicator verifies its peers
            for key, value in (
                ("verify_ssl_certificates", "true"),
                ("ssl_trusted_certificates_file", str(ca.cert)),
            ):
                status, body = node.request("PUT", f"_node/_local/_config/replicator/{key}", value)
                assert status == 200, body
        yield TLSNodes(nodes, ca, https_urls)
    finally:
        nodes.stop()


@pytest.fixture
def tls_app(tls_nodes: TLSNodes) -> Iterator[Any]:
    from notebook.api.app import create_app

    prefix = f"s{uuid.uuid4().hex[:10]}_"
    manager = _mesh(tls_nodes, prefix)
    manager.ensure_mesh()  # the databases on both nodes (a write needs 2 copies), jobs over HTTPS
    application = create_app(tls_nodes.config(prefix))
    yield application
    services = application.extensions["notebook"]
    services.stopping.set()
    manager.teardown()
    manager.close()
    drop_databases(services)
    services.close()


def _mesh(tls_nodes: TLSNodes, prefix: str) -> ReplicationManager:
    return ReplicationManager(
        tls_nodes.https_urls,
        list(database_names(prefix).values()),
        tls_nodes.nodes.user,
        tls_nodes.nodes.password,
        retry_seconds=2,
        tls=tls_nodes.tls,
    )


@COUCHDB3_ONLY
def test_the_app_runs_over_https_node_urls_with_verification_on(tls_nodes: TLSNodes, tls_app: Any) -> None:
    services = tls_app.extensions["notebook"]
    assert services.couch.urls == tuple(tls_nodes.https_urls)
    context = services.couch.tls.context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    # every client of the process verifies the same way: requests, set-up, key ring, replication
    assert services.keyring is not None and services.keyring.notes.client.tls is services.couch.tls
    assert all(node.client.tls is services.couch.tls for node in services.replication._manager._nodes)

    gql = GraphQL(tls_app.test_client())
    token = gql.register()["token"]
    note_input = {"title": "over TLS", "content": "sealed, then encrypted in transit"}
    created = gql.data(CREATE, {"input": note_input}, token)["createNote"]
    assert (
        gql.data(READ, {"id": created["id"]}, token)["note"]["content"] == "sealed, then encrypted in transit"
    )
    assert services.couch.served_by == tls_nodes.https_urls[0]
    assert all(status["healthy"] and status["last_error"] is None for status in services.couch.nodes_status())
    # the note really is on the node behind that HTTPS listener
    notes_db = services.databases.notes.name
    assert tls_nodes.https(0, "GET", f"{notes_db}/_all_docs").json()["total_rows"] >= 1


@COUCHDB3_ONLY
def test_the_replication_mesh_runs_over_https_and_converges(tls_nodes: TLSNodes) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}_"
    manager = _mesh(tls_nodes, prefix)
    try:
        job_ids = manager.ensure_mesh()
        assert job_ids
        notes_db = database_names(prefix)["notes"]
        jobs = tls_nodes.https(0, "POST", "_replicator/_all_docs?include_docs=true", {"keys": job_ids}).json()
        docs = [row["doc"] for row in jobs["rows"] if row.get("doc")]
        assert docs, jobs
        for doc in docs:
            assert doc["source"]["url"].startswith(tls_nodes.https_urls[0]), doc["source"]["url"]
            assert doc["target"]["url"].startswith(tls_nodes.https_urls[1]), doc["target"]["url"]
        doc_id = f"tls-{uuid.uuid4().hex[:8]}"
        assert tls_nodes.https(0, "PUT", f"{notes_db}/{doc_id}", {"written_on": "node0"}).status_code == 201
        wait_for(
            lambda: tls_nodes.https(1, "GET", f"{notes_db}/{doc_id}").status_code == 200,
            60,
            "the document written on node 0 to reach node 1 over HTTPS",
        )
        assert tls_nodes.https(1, "GET", f"{notes_db}/{doc_id}").json()["written_on"] == "node0"
        status = manager.status()
        assert status.links and all(link.healthy for link in status.links), status.links
    finally:
        manager.teardown()
        manager.close()


@COUCHDB3_ONLY
def test_a_node_with_a_certificate_of_another_ca_is_refused_naming_it(
    tls_nodes: TLSNodes, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    certs = tmp_path_factory.mktemp("rogue-certs")
    rogue_cert = make_ca(certs, "another-ca").issue(certs, "rogue-node")
    rogue = start_nodes(tmp_path_factory.mktemp("rogue-node"), 1, tls=(rogue_cert.cert, rogue_cert.key))
    try:
        rogue_url = rogue[0].https_url
        # alone: the request fails, and the reason names the node and the certificate problem
        client = CouchDBClient(rogue_url, user=rogue.user, password=rogue.password, tls=tls_nodes.tls)
        try:
            with pytest.raises(DatabaseUnavailable) as raised:
                client.request("GET", "")
        finally:
            client.close()
        assert f"TLS verification failed for {rogue_url}: " in raised.value.reason
        assert "unable to get local issuer certificate" in raised.value.reason
        # beside a good node: the app's client serves from the good one and reports the rogue
        with caplog.at_level(logging.WARNING, logger="notebook.database.couch"):
            urls = [rogue_url, tls_nodes.https_urls[0]]
            client = CouchDBClient(urls, user=rogue.user, password=rogue.password, tls=tls_nodes.tls)
            try:
                client.check_nodes()
                assert client.request("GET", "")["couchdb"] == "Welcome"
                assert client.served_by == tls_nodes.https_urls[0]
                bad = client.nodes_status()[0]
                assert not bad["healthy"] and bad["last_error"].startswith(
                    f"TLS verification failed for {rogue_url}"
                )
            finally:
                client.close()
        logged = [getattr(record, "error", "") for record in caplog.records]
        assert any(str(e).startswith(f"TLS verification failed for {rogue_url}") for e in logged), logged
        # the verifying replicator of node 0 refuses it as well: the job never completes
        job = {"_id": f"rogue-{uuid.uuid4().hex[:8]}",
               "source": {"url": tls_nodes.https_urls[0] + "_users", "headers": {}},
               "target": {"url": rogue_url + "rogue_target", "headers": {}},
               "create_target": True}  # fmt: skip
        assert tls_nodes.https(0, "POST", "_replicator", job).status_code == 201
        state = wait_for(
            lambda: _scheduler_state(tls_nodes, job["_id"]) in ("crashing", "failed") and _scheduler_state(
                tls_nodes, job["_id"]), 60, "the replicator to refuse the rogue node",
        )  # fmt: skip
        assert state in ("crashing", "failed")
        status, _ = rogue[0].request("GET", "rogue_target")
        assert status == 404  # nothing was written there
    finally:
        rogue.stop()


def _ids(tls_nodes: TLSNodes, index: int, db: str) -> set[str]:
    return {row["id"] for row in tls_nodes.https(index, "GET", f"{db}/_all_docs").json()["rows"]}


def _scheduler_state(tls_nodes: TLSNodes, doc_id: str) -> str | None:
    answer = tls_nodes.https(0, "GET", f"_scheduler/docs/_replicator/{doc_id}")
    return answer.json().get("state") if answer.status_code == 200 else None


@COUCHDB3_ONLY
def test_failover_still_works_over_https(tls_nodes: TLSNodes) -> None:
    from notebook.api.app import create_app

    prefix = f"f{uuid.uuid4().hex[:8]}_"
    manager = _mesh(tls_nodes, prefix)
    manager.ensure_mesh()
    # two nodes: with one of them killed, a quorum of 2 cannot be had (test_failover.py runs
    # three); here the point is the TLS path to the other node
    application = create_app(tls_nodes.config(prefix, write_quorum=1))
    services = application.extensions["notebook"]
    gql = GraphQL(application.test_client())
    try:
        token = gql.register()["token"]
        note = gql.data(CREATE, {"input": {"title": "before", "content": "written on node 0"}}, token)[
            "createNote"
        ]
        dbs = [services.databases.users.name, services.databases.notes.name]
        wait_for(lambda: all(_ids(tls_nodes, 0, db) <= _ids(tls_nodes, 1, db) for db in dbs), 60,
                 "the account and the note to reach node 1 over HTTPS")  # fmt: skip
        tls_nodes.nodes[0].kill()
        assert gql.data(READ, {"id": note["id"]}, token)["note"]["content"] == "written on node 0"
        created = gql.data(CREATE, {"input": {"title": "during the outage"}}, token)["createNote"]
        assert gql.data(READ, {"id": created["id"]}, token)["note"]["title"] == "during the outage"
        assert services.couch.active_url == tls_nodes.https_urls[1]
        down = services.couch.nodes_status()[0]
        assert not down["healthy"] and "TLS" not in (down["last_error"] or "")  # down, not distrusted
    finally:
        if not tls_nodes.nodes[0].is_running:
            tls_nodes.nodes[0].restart()
        services.stopping.set()
        manager.teardown()
        manager.close()
        services.close()
    assert wait_until(lambda: tls_nodes.https(0, "GET", "_up").status_code == 200, 30)


# -- certificate checks that need no database: every server ----------------------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b'{"couchdb":"Welcome","version":"0"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, Any]]:
    """A loopback HTTPS server; `start(cert)` serves with that certificate and returns its URL."""
    ca = make_ca(tmp_path, "local-ca")
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(cert: Any, tls: bool = True) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert.cert), str(cert.key))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}/"

    try:
        yield ca, start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _refusal(url: str, ca: CertificateAuthority) -> str:
    client = CouchDBClient(url, tls=CouchTLS(ca_file=str(ca.cert)), timeout=3.0)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            client.request("GET", "")
    finally:
        client.close()
    return raised.value.reason


def test_a_trusted_certificate_for_the_node_address_is_accepted(tls_server: Any, tmp_path: Path) -> None:
    ca, start = tls_server
    url = start(ca.issue(tmp_path, "right-address"))
    client = CouchDBClient(url, tls=CouchTLS(ca_file=str(ca.cert)), timeout=3.0)
    try:
        assert client.request("GET", "")["couchdb"] == "Welcome"
    finally:
        client.close()
    # the system store does not know the test's CA: the same server is refused without the CA file
    client = CouchDBClient(url, timeout=3.0)
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            client.request("GET", "")
    finally:
        client.close()
    assert raised.value.reason.startswith(f"TLS verification failed for {url}: ")


def test_a_certificate_for_another_address_is_refused(tls_server: Any, tmp_path: Path) -> None:
    ca, start = tls_server
    url = start(ca.issue(tmp_path, "wrong-address", ips=("127.0.0.2",)))
    reason = _refusal(url, ca)
    assert reason.startswith(f"TLS verification failed for {url}: ")
    assert "mismatch" in reason.lower(), reason  # "IP address mismatch, certificate is not valid for ..."


def test_a_node_speaking_no_tls_on_an_https_url_is_a_handshake_failure(tls_server: Any) -> None:
    ca, start = tls_server
    plain = start(None, tls=False)
    url = "https" + plain.removeprefix("http")
    reason = _refusal(url, ca)
    assert reason.startswith(f"TLS handshake failed for {url}: "), reason


# -- TLS from clients to the app: forwarded scheme, HSTS, the app's own HTTPS -----------------------


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "hsts"),
    [
        (("127.0.0.1",), "127.0.0.1", "https", True),  # our proxy says the client used HTTPS
        (("127.0.0.1",), "127.0.0.1", "http", False),
        (("127.0.0.1",), "127.0.0.1", "http, https", True),  # the nearest proxy's word counts
        ((), "127.0.0.1", "https", False),  # no trusted proxy: the header is anyone's
        (("10.9.0.0/16",), "127.0.0.1", "https", False),  # a peer that is not a trusted proxy
        (("127.0.0.1",), "127.0.0.1", None, False),
    ],
)
def test_hsts_only_when_the_client_hop_was_https(
    config: Config, trusted: tuple[str, ...], peer: str, forwarded: str | None, hsts: bool
) -> None:
    from dataclasses import replace

    from notebook.api.app import create_app

    application = create_app(replace(config, trusted_proxies=trusted))
    try:
        headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
        answer = application.test_client().get("/health", headers=headers, environ_base={"REMOTE_ADDR": peer})
        assert answer.status_code == 200
        assert ("Strict-Transport-Security" in answer.headers) is hsts, answer.headers
        if hsts:
            assert answer.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    finally:
        services = application.extensions["notebook"]
        services.stopping.set()
        drop_databases(services)
        services.close()


def test_notebook_server_serves_https_itself_with_tls_cert_file(tmp_path: Path) -> None:
    from devtools.local_server import free_port
    from tests.support.api_server import BIN, ServerProcess, clean_environment

    ca = make_ca(tmp_path, "app-ca")
    issued = ca.issue(tmp_path, "app")
    port = free_port()
    env = clean_environment(
        FLASK_ENV="production",
        FLASK_HOST="127.0.0.1",
        SECRET_KEY="production-secret-" + "t" * 32,
        COUCHDB_USER="notebook",
        COUCHDB_PASSWORD="couch-pass-7a6b5c",
        COUCHDB_URL=f"http://127.0.0.1:{free_port()}/",  # no database: alive, not ready
        TLS_CERT_FILE=str(issued.cert),
        TLS_KEY_FILE=str(issued.key),
    )
    command = [str(BIN / "notebook-server"), "--port", str(port), "--workers", "1"]
    server = ServerProcess(command, env, tmp_path, tmp_path, port)
    url = f"https://127.0.0.1:{port}/health"
    try:
        verify = ssl.create_default_context(cafile=str(ca.cert))

        def health() -> httpx.Response | None:
            assert server.process.poll() is None, server.stderr()[-3000:]
            try:
                return httpx.get(url, verify=verify, timeout=httpx.Timeout(60, connect=2))
            except httpx.ConnectError:
                return None

        answer = wait_for(health, 60, "notebook-server to answer over HTTPS")
        assert answer.status_code == 200
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        with pytest.raises(httpx.TransportError):  # the port speaks only TLS
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
    finally:
        server.stop()
    assert "couch-pass-7a6b5c" not in server.stderr()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"COUCHDB_URL": "http://couch1.internal:5984/"}, "http://couch1.internal:5984/ is plain HTTP"),
        ({"REPLICATION_NODES": "http://couch2.internal:5984/"}, "http://couch2.internal:5984/ is plain HTTP"),
        ({"TLS_CERT_FILE": "/nonexistent/cert.pem", "TLS_KEY_FILE": "/nonexistent/key.pem"}, "TLS_CERT_FILE"),
        ({"COUCHDB_CA_FILE": "/nonexistent/ca.pem"}, "COUCHDB_CA_FILE"),
    ],
)
def test_production_refuses_plain_http_nodes_and_missing_tls_files_in_one_line(
    tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    import subprocess

    from devtools.local_server import free_port
    from tests.support.api_server import BIN, clean_environment

    env = clean_environment(
        FLASK_ENV="production",
        SECRET_KEY="production-secret-" + "u" * 32,
        COUCHDB_USER="notebook",
        COUCHDB_PASSWORD="couch-pass-3c2b1a",
        **{"COUCHDB_URL": "http://127.0.0.1:9/", **settings},
    )
    result = subprocess.run([str(BIN / "notebook-server"), "--port", str(free_port())], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    reason = result.stderr.strip()
    assert expected in reason and "\n" not in reason and "couch-pass-3c2b1a" not in reason, reason
