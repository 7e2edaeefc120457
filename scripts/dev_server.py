"""Development server: local pouchdb-server node(s) plus the GraphQL API (`make run`, `make cluster`).

    python scripts/dev_server.py [--nodes 1] [--data-dir var/couchdb] [--db-port 5984]
                                 [--host 127.0.0.1] [--port 5000]

Starts the database nodes on 127.0.0.1 (the first on --db-port when it is free, otherwise on a
free port), points COUCHDB_URL at the first node and REPLICATION_NODES at the others, then serves
the API with werkzeug until Ctrl-C, and finally stops the nodes it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Work from a plain checkout too (the venv normally has the project installed in editable mode).
for _path in (PROJECT_ROOT / "src", PROJECT_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from notebook.database.local_server import (  # noqa: E402
    LOOPBACK,
    LocalCluster,
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
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    return args


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    if not data_dir.is_absolute():
        data_dir = PROJECT_ROOT / data_dir

    # SIGTERM (e.g. from a process manager) shuts down like Ctrl-C: API first, then the nodes.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    try:
        executable = ensure_pouchdb_server(PROJECT_ROOT)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    db_port = args.db_port
    if not port_is_free(db_port, LOOPBACK):
        db_port = free_port(LOOPBACK)
        print(f"port {args.db_port} is busy; the first database node uses port {db_port}")

    cluster = LocalCluster(data_dir, nodes=args.nodes, ports=[db_port], executable=executable)
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

        from notebook.api.app import create_app

        from config.settings import load_config

        app = create_app(load_config())

        display_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        print()
        print("NoteBook development server")
        for index, node in enumerate(cluster.nodes):
            role = "COUCHDB_URL" if index == 0 else "replica"
            print(f"  database node{index}: {node.url} ({role}, data {node.data_dir})")
        print(f"  GraphQL:             http://{display_host}:{args.port}/graphql")
        print("  Press Ctrl-C to stop.")
        print(flush=True)

        app.run(host=args.host, port=args.port, use_reloader=False, threaded=True)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping database nodes...", flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
