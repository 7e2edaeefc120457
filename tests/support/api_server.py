"""The API as a real server process (gunicorn or `notebook-server`), for tests of what only a real
HTTP server shows: startup refusals, the `Server` header, chunked bodies."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from config.settings import TestingConfig
from tests.support.sealed import test_codec

BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# settings a test sets itself; inherited values would make the outcome depend on the shell
SETTING_PREFIXES = (
    "FLASK_",
    "COUCHDB_",
    "SECRET_KEY",
    "ENCRYPTION_",
    "KEY_STORE",
    "KEYRING_",
    "DEV_SECRET",
    "CORS_",
    "LOG_",
    "REPLICATION_",
    "CONFLICT_",
    "GRAPHQL_",
    "MAX_REQUEST",
    "MAX_NOTEBOOKS",
    "ARGON2_",
    "TRUSTED_PROXIES",
    "LOGIN_",
    "REGISTER_",
    "PASSWORD_HASH_",
    "THROTTLE_",
    "STARTUP_",
    "METRICS_",
    "PROMETHEUS_",
    "HEALTH_PROBE_",
    "WRITE_QUORUM",
)


def clean_environment(**settings: str) -> dict[str, str]:
    """os.environ without any application setting, plus `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(SETTING_PREFIXES)}
    env["NOTEBOOK_ENV_FILE"] = ""  # a developer's .env must not change what a test runs
    # the test key files (created on first use), as an operator's `keys init` would give
    test_codec()
    config = TestingConfig()
    env["ENCRYPTION_KEY_PATH"] = config.encryption_key_path
    env["KEY_STORE_PATH"] = config.key_store_path
    env.update(settings)
    return env


def gunicorn_beside(
    config: Any, node_environment: dict[str, str], logdir: Path, **settings: str
) -> ServerProcess:
    """gunicorn with 2 workers, testing settings, on the databases of `config` (a test's own
    prefix): another OS process next to the test's app, as a second server would be."""
    from devtools.local_server import free_port

    port = free_port()
    env = clean_environment(
        FLASK_ENV="testing",
        COUCHDB_URL=config.couchdb_url,
        COUCHDB_DB_PREFIX=config.db_prefix,
        **node_environment,
        **settings,
    )
    command = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "notebook.api.app:create_app()"]
    return ServerProcess(command, env, PROJECT_ROOT, logdir, port)


def readme_gunicorn_command(port: int, workers: int = 2) -> list[str]:
    """The README's gunicorn line, bound to 127.0.0.1:`port` with `workers` workers."""
    lines = [
        line
        for line in (PROJECT_ROOT / "README.md").read_text().splitlines()
        if "gunicorn " in line and "notebook.api.app:create_app()" in line
    ]
    assert lines, "README.md has no gunicorn line"
    words = shlex.split(lines[0].split("gunicorn ", 1)[1], comments=True)
    replacements = {
        "-b": f"127.0.0.1:{port}",
        "--bind": f"127.0.0.1:{port}",
        "-w": str(workers),
        "--workers": str(workers),
    }
    command = [str(BIN / "gunicorn")]
    remaining = iter(words)
    for word in remaining:
        command.append(word)
        if word in replacements:
            next(remaining)
            command.append(replacements[word])
    assert command[-1] == "notebook.api.app:create_app()", command
    return command


class ServerProcess:
    """A server started with `command`, its output kept in files; stopped by its PID."""

    def __init__(
        self, command: list[str], env: dict[str, str], cwd: Path, logdir: Path, port: int,
        own_session: bool = False,
    ) -> None:  # fmt: skip
        """`own_session`: the server leads a process group of its own, so `kill()` can end it
        together with its workers, as a crash of the machine running it would."""
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.stderr_path = logdir / f"stderr-{port}.log"
        self.stdout_path = logdir / f"stdout-{port}.log"
        with open(self.stderr_path, "wb") as stderr, open(self.stdout_path, "wb") as stdout:
            self.process = subprocess.Popen(
                command, env=env, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=own_session
            )
        self.own_session = own_session

    def kill(self) -> None:
        """SIGKILL the server and, with `own_session`, every worker of its process group."""
        if self.own_session:
            os.killpg(self.process.pid, 9)  # the group our own child leads, by its id
        else:
            os.kill(self.process.pid, 9)
        self.process.wait(timeout=10)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until /health answers: the process serves, whatever the database."""
        self._wait_for("/health", timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /ready answers 200: the database is reachable and every index is built."""
        self._wait_for("/ready", timeout)

    def _wait_for(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.stderr()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling interval, not a timing assertion
        raise AssertionError(f"server: no 200 from {path} after {timeout}s:\n{self.stderr()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)  # SIGTERM to our own child, by PID
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait(timeout=5)


def raw_request(
    port: int, head: str, body_parts: list[bytes], timeout: float = 20
) -> tuple[int, dict[str, str], bytes]:
    """Send a request over a plain socket (e.g. chunked, which httpx would not let a test shape)
    and return (status, headers, body) of the answer; the server may stop reading early."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(head.encode("latin-1"))
            for part in body_parts:
                connection.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the whole body arrived: read what it said
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    header_block, _, body = answer.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _complete(answer: bytes) -> bool:
    header_block, _, body = answer.partition(b"\r\n\r\n")
    for line in header_block.decode("latin-1").split("\r\n"):
        if line.lower().startswith("content-length:"):
            return len(body) >= int(line.split(":", 1)[1])
    return False


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """An in-process app behind a real HTTP server on loopback (werkzeug's, in a thread), for
    clients that need a URL (a browser, the monitor); yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
