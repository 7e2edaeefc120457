"""Development server: local pouchdb-server node(s) plus the GraphQL API (`make run`, `make cluster`).

    python scripts/dev_server.py [--nodes 1] [--data-dir var/couchdb] [--db-port 5984]
                                 [--host 127.0.0.1] [--port 5000]

Starts the database nodes on 127.0.0.1 (node i on --db-port + i when that port is free, otherwise
on a free port), points COUCHDB_URL at the first node and REPLICATION_NODES at the others, then
serves the API with werkzeug until Ctrl-C, and finally stops the nodes it started.

Replication is not set up here: the app does it itself, as in production (its replication
supervisor sets up and repairs the mesh every REPLICATION_RETRY_SECONDS, docs/replication.md).
With several nodes (`make cluster`) this script supervises the nodes: a node that exits (killed,
crashed, or pouchdb-server exiting after its replication jobs were deleted) is started again
after --restart-after seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Work from a plain checkout too (the venv normally has the project installed in editable mode).
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from devtools.local_server import (  # noqa: E402
    LOOPBACK,
    LocalCluster,
    LocalNode,
    LocalNodeError,
    ensure_pouchdb_server,
    free_port,
    port_is_free,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run local database node(s) and the NoteBook API.")
    parser.add_argument("--nodes", type=int, default=1, help="database nodes to start (default 1)")
    parser.add_argument(
        "--data-dir", default="var/couchdb", help="database data directory, relative to the repo root"
    )
    parser.add_argument("--db-port", type=int, default=5984, help="port of the first database node")
    parser.add_argument("--host", default="127.0.0.1", help="address the API listens on")
    parser.add_argument("--port", type=int, default=5000, help="port the API listens on")
    parser.add_argument(
        "--restart-after",
        type=float,
        default=5.0,
        help="seconds after which a database node that exited is started again (default 5)",
    )
    parser.add_argument("--no-restart", action="store_true", help="leave database nodes that exit down")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    return args


def node_ports(first: int, count: int) -> list[int]:
    """first, first+1, ...: stable across runs, so replication jobs kept in the data directories
    keep naming the right nodes; a busy port is replaced by a free one."""
    ports: list[int] = []
    for index in range(count):
        port = first + index
        if not port_is_free(port, LOOPBACK) or port in ports:
            port = free_port(LOOPBACK)
            print(f"port {first + index} is busy; database node{index} uses port {port}")
        ports.append(port)
    return ports


def supervise(nodes: list[LocalNode], restart_after: float, stop: threading.Event) -> None:
    """Start again, after `restart_after` seconds, every node whose process has exited."""
    down_since: dict[int, float] = {}
    clock = 0.0
    while not stop.wait(0.5):
        clock += 0.5
        for index, node in enumerate(nodes):
            if node.is_running:
                down_since.pop(index, None)
                continue
            if index not in down_since:
                down_since[index] = clock
                print(f"database node{index} ({node.url}) exited; starting it again in {restart_after:g}s")
            elif clock - down_since[index] >= restart_after:
                try:
                    node.restart()
                    print(f"database node{index} ({node.url}) is back (pid {node.pid})", flush=True)
                except LocalNodeError as exc:
                    print(f"database node{index} did not start: {exc}", file=sys.stderr)
                down_since.pop(index, None)


def _stop_on_signal(signum: int, _frame: object) -> None:
    """First SIGTERM/SIGINT: stop like Ctrl-C (API first, then the nodes).

    Further signals are only noted: raising again inside the clean-up would abort
    `cluster.stop()` half-way with a traceback and leave the nodes to the atexit hook.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _already_stopping)
    raise KeyboardInterrupt


def _already_stopping(signum: int, _frame: object) -> None:
    print(f"{signal.Signals(signum).name} received: already stopping the database nodes", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    if not data_dir.is_absolute():
        data_dir = PROJECT_ROOT / data_dir

    # SIGTERM (e.g. from a process manager) shuts down like Ctrl-C: API first, then the nodes.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)

    try:
        executable = ensure_pouchdb_server(PROJECT_ROOT)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    cluster = LocalCluster(
        data_dir, nodes=args.nodes, ports=node_ports(args.db_port, args.nodes), executable=executable
    )
    stop = threading.Event()
    helpers: list[threading.Thread] = []
    try:
        try:
            cluster.start()
        except LocalNodeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

        urls = cluster.urls
        os.environ["COUCHDB_URL"] = urls[0]
        os.environ["REPLICATION_NODES"] = ",".join(urls[1:])
        os.environ["FLASK_HOST"] = args.host
        os.environ["FLASK_PORT"] = str(args.port)
        # one app process: its replication supervisor needs no random start offset
        os.environ.setdefault("REPLICATION_START_JITTER_SECONDS", "0")
        # an unset FLASK_ENV means production; this script is for development (`make run` says so too)
        os.environ.setdefault("FLASK_ENV", "development")

        from config.settings import ConfigError, load_config
        from notebook.api.app import create_app, run_development_server

        try:
            config = load_config()
            app = create_app(config)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if args.nodes > 1:
            period = config.replication_retry_seconds
            print(f"replication: a mesh of {args.nodes} nodes, kept up by the app every {period}s")
        if not args.no_restart:
            supervisor_args = (cluster.nodes, args.restart_after, stop)
            helpers.append(threading.Thread(target=supervise, args=supervisor_args, name="supervisor"))
        for helper in helpers:
            helper.daemon = True
            helper.start()

        display_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        print()
        print("NoteBook development server")
        for index, node in enumerate(cluster.nodes):
            role = "COUCHDB_URL" if index == 0 else "replica"
            print(f"  database node{index}: {node.url} ({role}, pid {node.pid}, data {node.data_dir})")
        print(f"  GraphQL:             http://{display_host}:{args.port}/graphql")
        if args.nodes > 1:
            print(f"  replication status:  http://{display_host}:{args.port}/api/replication/status (admins)")
        print("  Press Ctrl-C to stop.")
        print(flush=True)

        run_development_server(app, args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        # A stop requested some other way (an error) also ignores signals from here on.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _already_stopping)
        print("stopping database nodes...", flush=True)
        stop.set()
        for helper in helpers:
            helper.join(timeout=35)  # a node restart in progress finishes before the nodes stop
        cluster.stop()
        print("database nodes stopped", flush=True)
        # Python puts back the default handlers while it exits; ignoring is kept, so a late
        # signal cannot turn a clean exit into "killed by SIGTERM".
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
