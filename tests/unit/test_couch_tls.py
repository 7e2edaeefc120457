"""couch/tls.py and the replication jobs' refusal of credentials over plain HTTP."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from notebook.database.couch import CouchDBClient
from notebook.database.couch.tls import (
    CouchTLS,
    TLSConfigError,
    is_loopback_host,
    plain_http_refusal,
    tls_failure,
)
from notebook.database.replication import ReplicationManager
from notebook.database.replication.jobs import MeshNode, PlainHTTPRefused
from tests.support.certificates import make_ca


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LOCALHOST", True), ("10.0.0.1", False), ("couch1", False), ("localhost.example.com", False),
     ("::ffff:10.0.0.1", False), ("", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_plain_http_refusal_names_the_url_without_credentials() -> None:
    assert plain_http_refusal("https://10.0.0.1:6984/") is None
    assert plain_http_refusal("http://127.0.0.1:5984/") is None
    reason = plain_http_refusal("http://admin:pw-value@10.0.0.1:5984/")
    assert reason is not None and "http://10.0.0.1:5984/" in reason and "pw-value" not in reason


def test_the_default_context_verifies_certificates_and_host_names() -> None:
    context = CouchTLS().context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert CouchTLS().context() is not context  # each setting its own
    tls = CouchTLS()
    assert tls.context() is tls.context()  # built once, shared by every client given it


def test_a_ca_file_and_a_client_certificate_are_loaded(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "unit-ca")
    client = ca.issue(tmp_path, "app", client=True)
    context = CouchTLS(str(ca.cert), str(client.cert), str(client.key)).context()
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "unit-ca"),),)]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_unusable_tls_files_are_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    for tls, expected in [
        (CouchTLS(ca_file=str(tmp_path / "missing.pem")), "COUCHDB_CA_FILE"),
        (CouchTLS(ca_file=str(garbage)), "COUCHDB_CA_FILE"),
        (CouchTLS(client_cert=str(garbage)), "COUCHDB_CLIENT_CERT"),
        (CouchTLS(client_key=str(garbage)), "without COUCHDB_CLIENT_CERT"),
    ]:
        with pytest.raises(TLSConfigError) as raised:
            tls.context()
        assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_tls_failure_recognises_verification_and_handshake_errors() -> None:
    refused = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    refused.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise refused
        except ssl.SSLError as exc:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from exc
    except httpx.ConnectError as wrapped:
        assert tls_failure(wrapped) == ("verification", "unable to get local issuer certificate")
    assert tls_failure(httpx.ConnectError("[Errno 111] Connection refused")) is None


def test_clients_share_the_tls_they_are_given() -> None:
    tls = CouchTLS()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    client = CouchDBClient(["https://127.0.0.1:6984/"], tls=tls, transport=transport)
    try:
        assert client.tls is tls
    finally:
        client.close()
    manager = ReplicationManager(["https://127.0.0.1:6984/", "https://127.0.0.1:6985/"], ["db"], "u", "p",
                                 tls=tls, transport=transport)  # fmt: skip
    try:
        assert all(node.client.tls is tls for node in manager._nodes)
    finally:
        manager.close()


@pytest.mark.parametrize("url", ["http://10.0.0.4:5984/", "http://couch2:5984/"])
def test_no_replication_job_carries_credentials_over_plain_http_beyond_loopback(url: str) -> None:
    node = MeshNode(url, "admin", "job-password-value", 1.0)
    try:
        with pytest.raises(PlainHTTPRefused) as raised:
            node.endpoint("notes")
        assert url in str(raised.value) and "job-password-value" not in str(raised.value)
        # the same node reached through another (https) address is fine
        assert node.endpoint("notes", via="https://couch2.internal:6984/")["url"].startswith("https://")
    finally:
        node.client.close()


def test_replication_jobs_use_https_and_loopback_urls_as_given() -> None:
    for url in ("https://10.0.0.4:6984/", "http://127.0.0.1:5984/", "http://localhost:5984/"):
        node = MeshNode(url, "admin", "pw-value-1", 1.0)
        try:
            endpoint = node.endpoint("notes")
            assert endpoint["url"] == url + "notes" and endpoint["headers"]["Authorization"].startswith(
                "Basic "
            )
        finally:
            node.client.close()
    anonymous = MeshNode("http://10.0.0.4:5984/", "", "", 1.0)
    try:
        assert anonymous.endpoint("notes") == {"url": "http://10.0.0.4:5984/notes", "headers": {}}
    finally:
        anonymous.client.close()


def test_the_manager_skips_plain_http_links_and_says_which() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    urls = ["https://10.0.0.4:6984/", "https://10.0.0.6:6984/", "http://10.0.0.5:5984/"]
    manager = ReplicationManager(urls, ["notes"], "admin", "pw-value-1", transport=transport)
    try:
        secure, other, plain = manager._nodes
        failures: list[str] = []
        jobs = manager._job_docs(secure, [other], failures)
        assert [job["target"]["url"] for job in jobs] == ["https://10.0.0.6:6984/notes"]
        assert jobs[0]["source"]["url"] == "https://10.0.0.4:6984/notes" and failures == []
        # both directions of a plain link: no job, one failure line each, no password in it
        assert manager._job_docs(secure, [plain], failures) == []
        assert manager._job_docs(plain, [secure], failures) == []
        assert len(failures) == 2 and all("http://10.0.0.5:5984/" in line for line in failures)
        assert not any("pw-value-1" in line for line in failures)
    finally:
        manager.close()
