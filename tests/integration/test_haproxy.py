"""deploy/haproxy.cfg: validated with `haproxy -c`, then run for real (Debian's haproxy) in front
of two gunicorn instances over the database node of the server under test. haproxy terminates
TLS with a certificate of a throwaway CA made here: the API is served over HTTPS (TLS 1.2+,
HSTS), plain HTTP only redirects to it. One instance is killed (SIGKILL, with its workers) under
a steady stream of HTTPS requests: once haproxy's health check marks it down, no request fails.
Requests in flight at the kill are counted and reported.
"""

from __future__ import annotations

import csv
import io
import secrets
import ssl
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devtools.local_server import free_port
from tests.support.api_server import BIN, PROJECT_ROOT, ServerProcess, clean_environment
from tests.support.certificates import CertificateAuthority, make_ca
from tests.support.servers import NodeSet
from tests.support.tools import ensure_tool
from tests.support.waiting import wait_for

HAPROXY_CFG = PROJECT_ROOT / "deploy" / "haproxy.cfg"
CLIENTS = 4
AFTER_DOWN = 300  # requests that must all succeed once haproxy marked the killed instance down


@pytest.fixture(scope="module")
def haproxy() -> str:
    return ensure_tool("haproxy", "haproxy")


@dataclass
class Certificates:
    ca: CertificateAuthority
    combined: Path  # what haproxy's `crt` takes: the certificate, then its key

    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.cert))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("haproxy-tls")
    ca = make_ca(directory, "haproxy-test-ca")
    issued = ca.issue(directory, "notebook")
    combined = directory / "notebook.pem"
    combined.write_bytes(issued.cert.read_bytes() + issued.key.read_bytes())
    combined.chmod(0o600)
    return Certificates(ca, combined)


def test_haproxy_cfg_is_valid(haproxy: str, certificates: Certificates) -> None:
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CFG)],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_environment(TLS_CERT=str(certificates.combined)),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
    text = HAPROXY_CFG.read_text()
    assert "uri /ready" in text and "uri /_up" in text
    assert "ssl-min-ver TLSv1.2" in text and "Strict-Transport-Security" in text


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool


class Stream:
    """CLIENTS threads sending GraphQL requests through haproxy until stopped."""

    def __init__(self, url: str, token: str, verify: ssl.SSLContext) -> None:
        self.url = url
        self.token = token
        self.verify = verify
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=30, headers=headers, verify=self.verify) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.post(self.url, json={"query": "query Ping { me { id } }"})
                    ok = answer.status_code == 200 and answer.json()["data"]["me"]["id"] is not None
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    ok = False
                with self.lock:
                    self.outcomes.append(Outcome(started, time.monotonic(), ok))

    def count(self, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes if o.started >= since)


def server_states(stats_url: str) -> dict[str, tuple[str, int]]:
    """haproxy's view of the app instances: name -> (status, sessions so far)."""
    text = httpx.get(stats_url, timeout=5).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {
        row["svname"]: (row["status"], int(row["stot"] or 0))
        for row in rows
        if row["pxname"] == "notebook_app" and row["svname"] in ("app1", "app2")
    }


@dataclass
class Balancer:
    apps: list[ServerProcess]
    https: str  # the API, through haproxy's TLS listener
    http: str  # haproxy's plain HTTP listener (redirects only)
    stats_url: str
    certificates: Certificates


@pytest.fixture
def balanced(
    couch_node: NodeSet, haproxy: str, certificates: Certificates, tmp_path: Path
) -> Iterator[Balancer]:
    prefix = f"h{uuid.uuid4().hex[:10]}_"
    secret = secrets.token_urlsafe(48)  # one deployment: every instance signs with the same key
    apps: list[ServerProcess] = []
    balancer: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(2):
            port = free_port()
            env = clean_environment(
                FLASK_ENV="testing",
                COUCHDB_URL=couch_node.urls[0],
                COUCHDB_DB_PREFIX=prefix,
                SECRET_KEY=secret,
                TRUSTED_PROXIES="127.0.0.1",  # haproxy: its X-Forwarded-Proto is believed
                **couch_node.environment(),
            )
            command = [
                str(BIN / "gunicorn"),
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "notebook.api.app:create_app()",
            ]
            apps.append(ServerProcess(command, env, PROJECT_ROOT, tmp_path, port, own_session=True))
        for app in apps:
            app.wait_ready(90)
        front, tls_front, stats = free_port(), free_port(), free_port()
        haproxy_env = clean_environment(
            NOTEBOOK_BIND=f"127.0.0.1:{front}",
            NOTEBOOK_TLS_BIND=f"127.0.0.1:{tls_front}",
            TLS_CERT=str(certificates.combined),
            HTTPS_PORT=str(tls_front),
            APP1=f"127.0.0.1:{apps[0].port}",
            APP2=f"127.0.0.1:{apps[1].port}",
            COUCHDB_BIND=f"127.0.0.1:{free_port()}",
            COUCH1=couch_node.urls[0].split("//")[1].rstrip("/"),
            COUCH2="127.0.0.1:9",
            COUCH3="127.0.0.1:9",
            STATS_BIND=f"127.0.0.1:{stats}",
            CHECK_INTER="300ms",
        )
        with open(tmp_path / "haproxy.log", "wb") as log:
            balancer = subprocess.Popen(
                [haproxy, "-db", "-f", str(HAPROXY_CFG)],
                env=haproxy_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        stats_url = f"http://127.0.0.1:{stats}/stats;csv"
        wait_for(
            lambda: _quietly(lambda: {s for s, _ in server_states(stats_url).values()} == {"UP"}),
            30,
            "haproxy to see both instances up",
        )
        yield Balancer(
            apps, f"https://127.0.0.1:{tls_front}", f"http://127.0.0.1:{front}", stats_url, certificates
        )
    finally:
        if balancer is not None:
            balancer.terminate()  # our own child, by its Popen handle (PID)
            balancer.wait(timeout=10)
        for app in apps:
            app.stop()


def _quietly(check):  # type: ignore[no-untyped-def]
    try:
        return check()
    except httpx.HTTPError:
        return False


REGISTER = """mutation($email: String!) {
    register(email: $email, password: "correct horse battery", displayName: "H") { accessToken } }"""


def test_the_api_is_served_over_https_and_plain_http_redirects(balanced: Balancer) -> None:
    verify = balanced.certificates.verify()
    ready = httpx.get(f"{balanced.https}/ready", verify=verify, timeout=10)
    assert ready.status_code == 200
    assert ready.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    variables = {"email": f"h-{uuid.uuid4().hex[:8]}@example.com"}
    answer = httpx.post(
        f"{balanced.https}/graphql",
        json={"query": REGISTER, "variables": variables},
        verify=verify,
        timeout=30,
    )
    assert answer.json()["data"]["register"]["accessToken"]
    # the app behind it saw HTTPS (X-Forwarded-Proto from a trusted proxy): one HSTS header
    assert answer.headers.get_list("Strict-Transport-Security") == ["max-age=31536000; includeSubDomains"]
    # plain HTTP: a redirect to the same path over HTTPS, method and body kept; nothing served
    for method in ("GET", "POST"):
        plain = httpx.request(
            method, f"{balanced.http}/graphql?x=1", json={"query": "{ __typename }"}, timeout=10
        )
        assert plain.status_code == 308, plain.text
        assert plain.headers["Location"] == f"{balanced.https}/graphql?x=1"
        assert "data" not in plain.text
    # the orchestrator's liveness check stays on plain HTTP
    assert httpx.get(f"{balanced.http}/haproxy-health", timeout=5).status_code == 200
    # the test's CA is needed: the system store does not know it
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{balanced.https}/ready", timeout=10)
    # TLS 1.2 is the oldest accepted; a client offering only 1.0/1.1 is refused by haproxy
    assert (
        httpx.get(f"{balanced.https}/ready", verify=_only(balanced, ssl.TLSVersion.TLSv1_2)).status_code
        == 200
    )
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(f"{balanced.https}/ready", verify=_only(balanced, ssl.TLSVersion.TLSv1_1), timeout=10)
    assert "protocol version" in str(refused.value).lower().replace("_", " "), str(refused.value)


def _only(balanced: Balancer, newest: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context offering TLS 1.0 up to `newest` (OpenSSL's security level lowered so
    that it really offers the old versions: the refusal must come from haproxy)."""
    context = balanced.certificates.verify()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering them is the point here
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = newest
    return context


def test_killing_an_instance_loses_no_request_once_haproxy_marked_it_down(balanced: Balancer) -> None:
    apps, front, stats_url = balanced.apps, balanced.https, balanced.stats_url
    verify = balanced.certificates.verify()
    variables = {"email": f"h-{uuid.uuid4().hex[:8]}@example.com"}
    token = httpx.post(
        f"{front}/graphql", json={"query": REGISTER, "variables": variables}, verify=verify, timeout=30
    ).json()["data"]["register"]["accessToken"]
    assert httpx.get(f"{balanced.http}/haproxy-health", timeout=5).status_code == 200

    stream = Stream(f"{front}/graphql", token, verify)
    for thread in stream.threads:
        thread.start()
    try:
        wait_for(lambda: stream.count() >= 100, 60, "100 requests before the kill")
        wait_for(
            lambda: all(n > 0 for _, n in server_states(stats_url).values()), 30, "both instances serving"
        )
        killed_at = time.monotonic()
        apps[0].kill()
        wait_for(
            lambda: server_states(stats_url)["app1"][0].startswith("DOWN"), 30, "haproxy to mark app1 down"
        )
        marked_at = time.monotonic()
        wait_for(
            lambda: stream.count(since=marked_at) >= AFTER_DOWN, 120, f"{AFTER_DOWN} requests after DOWN"
        )
    finally:
        stream.stop.set()
        for thread in stream.threads:
            thread.join(timeout=30)

    outcomes = list(stream.outcomes)
    in_flight = [o for o in outcomes if o.started < killed_at < o.ended]
    before_down = [o for o in outcomes if killed_at <= o.started < marked_at]
    after_down = [o for o in outcomes if o.started >= marked_at]
    report = (
        f"haproxy: {len(outcomes)} requests; {len(in_flight)} in flight at the kill "
        f"({sum(not o.ok for o in in_flight)} failed); {len(before_down)} sent between the kill and DOWN "
        f"({sum(not o.ok for o in before_down)} failed); {len(after_down)} after DOWN "
        f"({sum(not o.ok for o in after_down)} failed)"
    )
    print(report)
    assert all(o.ok for o in outcomes if o.ended < killed_at), report
    assert len(after_down) >= AFTER_DOWN and all(o.ok for o in after_down), report
    assert server_states(stats_url)["app2"][0] == "UP"
