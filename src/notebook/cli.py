"""`notebook-server`: serve the API (gunicorn in production, a threaded dev server otherwise).

    notebook-server [--host H] [--port P] [--workers N]     serve
    notebook-server create-admin EMAIL [--revoke]           make an existing user an admin
    notebook-server nodes list                              the deployment's database nodes
    notebook-server nodes add URL [--timeout S]             add a node (set up, caught up, recorded)
    notebook-server nodes remove URL                        take a node out of replication
    notebook-server backup FILE                             every document into FILE (gzip, mode 0600)
    notebook-server restore FILE                            a backup into empty databases on COUCHDB_URL
    notebook-server prune-activity [--days N]               delete activity older than N days
                                                            (default ACTIVITY_RETENTION_DAYS)

The node list is one replicated document (docs/replication.md, "Replication that runs itself"):
every app process adopts a change at its next repair round, whatever its environment says.

Admins are made here, by whoever runs the server, never through the API.

FLASK_ENV unset means production. An unusable configuration stops it with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from config.settings import ConfigError, load_config


def create_admin(email: str, revoke: bool = False) -> int:
    """Grant (or take away) the admin flag of the account with this e-mail address."""
    from notebook.bootstrap import bootstrap
    from notebook.core.errors import DomainError
    from notebook.database.couch import CouchError

    try:
        services = bootstrap(load_config(), install_schema=False)
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    try:
        services.auth.set_admin(email, not revoke)
    except (CouchError, DomainError) as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 1
    finally:
        services.close()
    print(f"{email}: admin {'revoked' if revoke else 'granted'}")
    return 0


def nodes_command(action: str, url: str | None, timeout: float) -> int:
    """`nodes list|add|remove`: read or change the deployment's replicated node list."""
    from notebook.bootstrap import bootstrap
    from notebook.core.errors import DomainError, StorageError

    try:
        services = bootstrap(load_config(), install_schema=False)
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    replication = services.replication
    try:
        listed = None
        if action == "add" and url:
            added = replication.add_node_to_deployment(url, timeout)
            state = "caught up" if added.caught_up else f"still catching up after {timeout:g}s"
            print(f"{added.url}: added ({len(added.job_ids)} jobs, {state})")
        elif action == "remove" and url:
            removed, listed = replication.remove_node_from_deployment(url)
            print(f"removed ({removed} jobs deleted)")
        listed = listed or replication.node_list()
        origin = f"version {listed.version}" if listed.version else "from the environment, not recorded yet"
        print(f"nodes ({origin}):")
        for node in listed.urls:
            print(f"  {node}")
    except (DomainError, StorageError) as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 1
    finally:
        services.close()
    return 0


def backup_command(action: str, path: str) -> int:
    """`backup FILE` / `restore FILE` on the node of COUCHDB_URL, as the set-up account
    (COUCHDB_ADMIN_USER, else COUCHDB_USER). A restore goes to that one node: replication
    copies it to the others."""
    from pathlib import Path

    from notebook.core.errors import StorageError
    from notebook.database.backup import BackupError, restore_backup, write_backup
    from notebook.database.couch import CouchDBClient

    config = load_config()
    user = config.couchdb_admin_user or config.couchdb_user
    password = config.couchdb_admin_password if config.couchdb_admin_user else config.couchdb_password
    client = CouchDBClient(config.couchdb_url, user=user, password=password, timeout=60.0)
    try:
        if action == "backup":
            summary = write_backup(client, config.db_prefix, Path(path))
        else:
            summary = restore_backup(client, config.db_prefix, Path(path))
    except (BackupError, StorageError, OSError) as exc:
        print(f"notebook-server: {action} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    counts = ", ".join(f"{role} {count}" for role, count in summary.documents.items())
    verb = "written to" if action == "backup" else "restored from"
    print(f"{summary.total} documents {verb} {path} ({counts})")
    return 0


def prune_activity(days: int | None) -> int:
    """Delete activity records (security events included) older than the retention period."""
    from notebook.bootstrap import bootstrap
    from notebook.core.errors import StorageError

    try:
        services = bootstrap(load_config(), install_schema=False)
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    if days is not None and days < 1:
        print("notebook-server: --days must be at least 1", file=sys.stderr)
        return 2
    try:
        deleted = services.activity.prune(days)
    except StorageError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 1
    finally:
        services.close()
    kept = days if days is not None else services.config.activity_retention_days
    print(f"deleted {deleted} activity records older than {kept} days")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="notebook-server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="interface to bind (default FLASK_HOST)")
    parser.add_argument("--port", type=int, help="port to bind (default FLASK_PORT)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers in production")
    commands = parser.add_subparsers(dest="command")
    admin = commands.add_parser("create-admin", help="make an existing user an administrator")
    admin.add_argument("email", help="the user's e-mail address")
    admin.add_argument("--revoke", action="store_true", help="take the admin flag away instead")
    nodes = commands.add_parser("nodes", help="list, add or remove the deployment's database nodes")
    node_actions = nodes.add_subparsers(dest="action", required=True)
    node_actions.add_parser("list", help="the recorded node list")
    add = node_actions.add_parser("add", help="add a node: databases, jobs both ways, catch-up")
    add.add_argument("url", help="the node, e.g. http://10.0.0.4:5984/ (credentials from the environment)")
    add.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the catch-up")
    remove = node_actions.add_parser("remove", help="take a node out: its jobs and those to it")
    remove.add_argument("url", help="the node's URL as listed")
    for action, help_text in (("backup", "write every document to FILE"),
                              ("restore", "restore FILE into empty databases")):  # fmt: skip
        command = commands.add_parser(action, help=help_text)
        command.add_argument("file", help="the backup file (gzip JSON lines)")
    prune = commands.add_parser("prune-activity", help="delete activity older than the retention period")
    prune.add_argument("--days", type=int, help="keep this many days (default ACTIVITY_RETENTION_DAYS)")
    args = parser.parse_args(argv)
    if args.command in ("backup", "restore"):
        return backup_command(args.command, args.file)
    if args.command == "prune-activity":
        return prune_activity(args.days)
    if args.command == "create-admin":
        return create_admin(args.email, args.revoke)
    if args.command == "nodes":
        return nodes_command(args.action, getattr(args, "url", None), getattr(args, "timeout", 120.0))
    try:
        config = load_config()
        config.validate()
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.host
    port = args.port or config.port
    if config.env == "production":
        from gunicorn.app.wsgiapp import run

        sys.argv = [
            "gunicorn",
            "--config",
            "python:notebook.api.gunicorn_config",
            "--workers",
            str(args.workers),
            "--threads",
            "4",
            "--bind",
            f"{host}:{port}",
            "notebook.api.app:create_app()",
        ]
        run()
        return 0
    from notebook.api.app import create_app, run_development_server

    run_development_server(create_app(config), host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
