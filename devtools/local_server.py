"""Local CouchDB-compatible database nodes for development and tests (pouchdb-server 4.2.0).

Production runs Apache CouchDB 3; on a developer machine and in the test suite the project runs
the npm package ``pouchdb-server``, pinned in ``package.json``/``package-lock.json`` and installed
into ``node_modules/`` by :func:`ensure_pouchdb_server` (``npm ci``). This module only starts,
watches and stops those processes; it holds no application logic and uses only the standard
library, so it can run before the project's dependencies are importable.

Security: the nodes run in "admin party" mode (no admin account) and are always bound to the
loopback address. pouchdb-server 4.2.0 has known, unfixed admin-check bypasses (for example
through ``/_node/node1@127.0.0.1/_config``, pouchdb-server issues #407/#415), so setting an admin
password would not make it safe to expose; instead it is never reachable beyond 127.0.0.1.
:class:`LocalNode` refuses any other bind address.

pouchdb-server behaviour this module works around:

* It writes ``config.json`` and ``log.txt`` into its *current directory* (even with
  ``--no-stdout-logs``), so every node runs with ``cwd`` set to its own data directory.
* When its port is taken it prints "Port N is already in use" and exits with status 0, and a
  ``GET /`` would then be answered by whichever server owns the port. Readiness therefore also
  checks that our process is alive and that the answering server's ``uuid`` is the one in our
  data directory's ``config.json``.
* It answers ``text/plain`` unless the request sends ``Accept: application/json``.
* It has no ``/_up``; ``GET /`` is the health probe.

Each process is started in its own session (``start_new_session=True``) so that a Ctrl-C in the
terminal reaches only the Python process, which then stops the nodes in order. Only the PIDs
this module spawned are ever signalled.

Command line::

    python -m devtools.local_server --nodes 3 --dir var/couchdb [--port 5984]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import json
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

LOOPBACK = "127.0.0.1"
OUTPUT_FILE_NAME = "pouchdb-server.out"
_PORT_IN_USE_MARKER = "already in use"
_PORT_RETRIES = 5


def pouchdb_server_path(project_root: Path = PROJECT_ROOT) -> Path:
    """Where npm puts the pouchdb-server executable for this project."""
    return Path(project_root) / "node_modules" / ".bin" / "pouchdb-server"


def ensure_pouchdb_server(project_root: Path = PROJECT_ROOT) -> Path:
    """Return the pouchdb-server executable, installing the pinned version with npm if missing."""
    project_root = Path(project_root)
    executable = pouchdb_server_path(project_root)
    if executable.exists():
        return executable
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"{executable} is missing and npm is not installed: install Node.js (18 or newer, with npm), "
            f"then run `npm ci` in {project_root}"
        )
    if (project_root / "package-lock.json").exists():
        command = [npm, "ci", "--no-audit", "--no-fund"]
    else:
        command = [npm, "install", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(
            command, cwd=project_root, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise RuntimeError(f"could not run {' '.join(command)} in {project_root}: {exc}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        tail = "\n".join(output[-20:])
        raise RuntimeError(
            f"`{' '.join(command[1:])}` failed in {project_root} (exit {result.returncode}):\n{tail}"
        )
    if not executable.exists():
        raise RuntimeError(f"npm finished but {executable} does not exist; check package.json")
    return executable


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could bind `host:port` now (same SO_REUSEADDR semantics as Node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# Nodes still running when the interpreter exits (a test crashed, an exception escaped) are
# stopped here, so no pouchdb-server outlives the Python process that started it.
_live_nodes: set[LocalNode] = set()


@atexit.register
def _stop_leftover_nodes() -> None:
    for node in list(_live_nodes):
        with contextlib.suppress(Exception):
            node.stop(timeout=5)


OPEN_FILES_WANTED = 1 << 20


def _raise_open_files_limit(pid: int) -> None:
    """Let a pouchdb-server process open many files. It keeps every database and every view
    index it has opened as a LevelDB store with its files open, and a long test session opens
    thousands (each test's app has its own databases and views): at the usual limit the node
    dies of EMFILE half-way through the suite. Raised as far as this account may (root: far;
    others: up to their hard limit)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (OPEN_FILES_WANTED, hard):
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return
        except (OSError, ValueError):
            continue


class LocalNodeError(RuntimeError):
    """A local database node did not start or did not answer."""


class LocalNode:
    """One pouchdb-server process bound to 127.0.0.1, with its own port and data directory."""

    #: How long start() waits for its port to become free (e.g. just after a kill) before failing.
    port_wait_seconds: float = 5.0

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        host: str = LOOPBACK,
        executable: Path | str | None = None,
    ) -> None:
        if host != LOOPBACK:
            raise ValueError(
                f"local database nodes only bind {LOOPBACK} (pouchdb-server is not safe to expose)"
            )
        self.host = host
        self.port = int(port) if port else free_port(host)
        self.data_dir = Path(data_dir).resolve()
        self.executable = Path(executable) if executable is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running else "stopped"
        return f"<LocalNode {self.url} {state} dir={self.data_dir}>"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def output_path(self) -> Path:
        """Where the process's stdout/stderr go (its own log is data_dir/log.txt)."""
        return self.data_dir / OUTPUT_FILE_NAME

    def log_tail(self, lines: int = 20) -> str:
        parts = [_tail(self.output_path, lines), _tail(self.data_dir / "log.txt", lines)]
        return "\n".join(part for part in parts if part)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn pouchdb-server (returns at once; call wait_ready() to wait until it answers)."""
        if self.is_running:
            return
        executable = self.executable or ensure_pouchdb_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._wait_port_free(timeout=self.port_wait_seconds)
        self._close_output()
        self._output = open(self.output_path, "ab")  # closed in stop()/kill()
        self._output.write(f"--- starting on {self.url} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self._output.flush()
        command = [
            str(executable),
            "--host", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--no-stdout-logs",
            "--no-color",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            command,
            cwd=self.data_dir,  # it writes config.json and log.txt into its cwd
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _raise_open_files_limit(self._proc.pid)
        _live_nodes.add(self)

    def wait_ready(self, timeout: float = 30) -> None:
        """Block until this node's own process answers `GET /` with JSON; raise LocalNodeError."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            if self._proc is None:
                raise LocalNodeError(f"node {self.url} was never started")
            code = self._proc.poll()
            if code is not None:
                raise LocalNodeError(
                    f"pouchdb-server for {self.url} exited with status {code} before it was ready; "
                    f"log:\n{self.log_tail()}"
                )
            try:
                info = self._get_json("", timeout=2.0)
            except (OSError, ValueError) as exc:
                last_error = str(exc)
            else:
                expected = self._config_uuid()
                if expected is None or info.get("uuid") == expected:
                    return
                last_error = f"{self.url} is answered by another server (uuid {info.get('uuid')})"
            if time.monotonic() >= deadline:
                raise LocalNodeError(
                    f"pouchdb-server for {self.url} not ready after {timeout:g}s ({last_error}); "
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM this node's own process, SIGKILL it after `timeout` seconds. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._finish()

    def kill(self) -> None:
        """SIGKILL the process and wait for it to exit (simulates a crashed node)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self._finish()

    def restart(self, timeout: float = 30) -> None:
        """Start again on the same port and data directory and wait until it answers."""
        self.stop()
        for attempt in range(_PORT_RETRIES):
            self.start()
            try:
                self.wait_ready(timeout)
                return
            except LocalNodeError:
                if attempt + 1 < _PORT_RETRIES and self._exited_port_in_use():
                    time.sleep(0.5 * (attempt + 1))
                    continue
                self.stop()
                raise

    # -- helpers -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """A small JSON request to this node (for tests and diagnostics): (status, decoded body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload or b"null")
            except ValueError:
                return exc.code, payload.decode(errors="replace")

    def _get_json(self, path: str, timeout: float) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status != 200:
                raise ValueError(f"GET {self.url}{path} answered {resp.status}")
            decoded = json.loads(resp.read())
        if not isinstance(decoded, dict):
            raise ValueError(f"GET {self.url}{path} did not answer a JSON object")
        return decoded

    def _config_uuid(self) -> str | None:
        """The server uuid pouchdb-server keeps in the config.json of our data directory."""
        try:
            config = json.loads((self.data_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        uuid = config.get("couchdb", {}).get("uuid") if isinstance(config, dict) else None
        return uuid if isinstance(uuid, str) else None

    def _exited_port_in_use(self) -> bool:
        return (
            self._proc is not None
            and self._proc.poll() is not None
            and _PORT_IN_USE_MARKER in _tail(self.output_path, 5)
        )

    def _wait_port_free(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_is_free(self.port, self.host):
            if time.monotonic() >= deadline:
                raise LocalNodeError(f"port {self.port} on {self.host} is in use by another process")
            time.sleep(0.1)

    def _finish(self) -> None:
        _live_nodes.discard(self)
        self._close_output()

    def _close_output(self) -> None:
        if self._output is not None:
            with contextlib.suppress(OSError):
                self._output.close()
            self._output = None


class LocalCluster:
    """Several LocalNodes (data in base_dir/node<i>), started together; a context manager."""

    def __init__(
        self,
        base_dir: Path | str,
        nodes: int = 1,
        ports: Sequence[int] | None = None,
        host: str = LOOPBACK,
        executable: Path | str | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        ports = list(ports or [])
        if len(ports) > nodes:
            raise ValueError(f"{len(ports)} ports given for {nodes} nodes")
        while len(ports) < nodes:
            port = free_port(host)
            if port not in ports:
                ports.append(port)
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports must be distinct: {ports}")
        self.base_dir = Path(base_dir).resolve()
        self.executable = executable
        self.nodes: list[LocalNode] = [
            LocalNode(self.base_dir / f"node{i}", port=port, host=host, executable=executable)
            for i, port in enumerate(ports)
        ]

    def __repr__(self) -> str:
        return f"<LocalCluster {self.urls}>"

    def __iter__(self) -> Iterator[LocalNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int) -> LocalNode:
        return self.nodes[index]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30) -> None:
        """Spawn every node, then wait until all answer; on failure stop them all and raise."""
        executable = self.executable or ensure_pouchdb_server()
        for node in self.nodes:
            node.executable = node.executable or Path(executable)
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop every node: SIGTERM all first, so they shut down in parallel, then wait."""
        for node in self.nodes:
            proc = node._proc
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.local_server",
        description="Run local pouchdb-server nodes on 127.0.0.1 until interrupted.",
    )
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument(
        "--dir", default=str(PROJECT_ROOT / "var" / "couchdb"), help="data directory (node<i> inside)"
    )
    parser.add_argument("--port", type=int, default=None, help="port of the first node (default: free)")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")

    try:
        cluster = LocalCluster(Path(args.dir), nodes=args.nodes, ports=[args.port] if args.port else None)
    except ValueError as exc:
        parser.error(str(exc))
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        cluster.start()
    except (LocalNodeError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for index, node in enumerate(cluster.nodes):
            print(f"node{index}: {node.url} (pid {node.pid}, data {node.data_dir})", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        reported: set[int] = set()
        while not stop_requested.wait(1.0):
            for index, node in enumerate(cluster.nodes):
                if not node.is_running and index not in reported:
                    reported.add(index)
                    print(
                        f"warning: node{index} ({node.url}) exited; log:\n{node.log_tail()}", file=sys.stderr
                    )
    finally:
        print("stopping nodes...", flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
