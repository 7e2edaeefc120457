"""`notebook-server`: serve the API (gunicorn or granian in production, a threaded dev server
otherwise).

    notebook-server [--host H] [--port P] [--workers N]     serve
                    [--server gunicorn|granian]
    notebook-server create-admin EMAIL [--revoke]           make an existing user an admin
    notebook-server nodes list                              the deployment's database nodes
    notebook-server nodes add URL [--timeout S]             add a node (set up, caught up, recorded)
    notebook-server nodes remove URL                        take a node out of replication
    notebook-server backup FILE                             every document into FILE (gzip, mode 0600)
    notebook-server restore FILE                            a backup into empty databases on COUCHDB_URL
    notebook-server prune-activity [--days N]               delete activity older than N days
                                                            (default ACTIVITY_RETENTION_DAYS)
    notebook-server keys init                               create the master key and key store
    notebook-server keys status                             keys, states, documents using each
    notebook-server keys rotate [--index]                   new active data (or index) key
    notebook-server keys reencrypt [--batch N]              move documents to the active keys
    notebook-server keys retire KEY_ID                      retire a key no document uses
    notebook-server keys rotate-master NEW_KEY NEW_STORE    re-wrap the keys under a new master

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
    from config.settings import plain_http_beyond_loopback
    from notebook.bootstrap import bootstrap
    from notebook.core.errors import DomainError, StorageError

    try:
        config = load_config()
        if action == "add" and url and config.env == "production" and not config.couchdb_allow_plain_http:
            if plain_http_beyond_loopback(url):
                # the same rule as COUCHDB_URL and REPLICATION_NODES (ProductionConfig.validate)
                reason = "that node is plain HTTP beyond loopback: add its https:// URL"
                raise ConfigError(f"{reason} (or COUCHDB_ALLOW_PLAIN_HTTP=true if that network is trusted)")
        services = bootstrap(config, install_schema=False)
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

    from notebook.bootstrap import couch_tls
    from notebook.core.errors import StorageError
    from notebook.database.backup import BackupError, restore_backup, write_backup
    from notebook.database.couch import CouchDBClient

    try:
        config = load_config()
        tls = couch_tls(config)
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    user = config.couchdb_admin_user or config.couchdb_user
    password = config.couchdb_admin_password if config.couchdb_admin_user else config.couchdb_password
    client = CouchDBClient(config.couchdb_url, user=user, password=password, timeout=60.0, tls=tls)
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


def keys_command(args: argparse.Namespace) -> int:
    """`keys init|status|rotate|reencrypt|retire|rotate-master` (docs/security.md, "Key rotation")."""
    from pathlib import Path

    from notebook.utils.key_store import KeyStoreError, create_key_files

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    if args.action == "init":
        try:
            ring = create_key_files(Path(config.encryption_key_path), Path(config.key_store_path))
        except KeyStoreError as exc:
            print(f"notebook-server: {exc}", file=sys.stderr)
            return 1
        print(f"created {config.encryption_key_path} and {config.key_store_path} (mode 0600)")
        for key in ring.stored():
            print(f"  {key.kind} key {key.id}: {key.state}")
        return 0
    if not config.encryption_enabled:
        print("notebook-server: encryption at rest is off (ENCRYPTION_ENABLED=false)", file=sys.stderr)
        return 2
    from notebook.bootstrap import bootstrap
    from notebook.core.errors import DomainError, StorageError
    from notebook.database.key_rotation import CLEAR, KeyRotation

    try:
        services = bootstrap(config, install_schema=False)
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    assert services.keyring is not None
    rotation = KeyRotation(services.keyring, services.notes.notes, config.all_node_urls)  # type: ignore[arg-type]
    try:
        if args.action == "status":
            for key, used in rotation.status():
                print(f"{key.kind:5} {key.id}  {key.state:12} created {key.created_at}  documents {used}")
            clear = rotation.usage().get(CLEAR, 0)
            if clear:
                print(f"documents in clear: {clear} (run `keys reencrypt`)")
        elif args.action == "rotate":
            added = rotation.rotate("index" if args.index else "data")
            print(f"new active {added.kind} key {added.id}; run `keys reencrypt` to move old documents to it")
        elif args.action == "retire":
            retired = rotation.retire(args.key_id)
            print(f"{retired.id}: retired")
        elif args.action == "rotate-master":
            rotation.rotate_master(Path(args.new_master), Path(args.new_key_store))
            print(f"keys re-wrapped; install {args.new_master} and {args.new_key_store} on every host")
        elif args.action == "reencrypt":
            return _reencrypt(rotation, args.batch)
    except (KeyStoreError, DomainError, StorageError) as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 1
    finally:
        services.close()
    return 0


def _reencrypt(rotation: object, batch: int) -> int:
    from rich.progress import Progress

    from notebook.database.key_rotation import KeyRotation

    assert isinstance(rotation, KeyRotation)
    total = sum(rotation.stale().values())
    with Progress(transient=False) as progress:
        task = progress.add_task("re-encrypting", total=total or 1)
        report = rotation.reencrypt(batch, progress=lambda done: progress.advance(task, done))
        progress.update(task, completed=total or 1)
    left = sum(report.remaining.values())
    print(f"rewrote {report.rewritten} documents ({report.refused} changed meanwhile); left: {left}")
    return 0 if left == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="notebook-server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="interface to bind (default FLASK_HOST)")
    parser.add_argument("--port", type=int, help="port to bind (default FLASK_PORT)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in production")
    parser.add_argument(
        "--server",
        choices=("gunicorn", "granian"),
        default="gunicorn",
        help="the WSGI server in production (granian: faster here, docs/benchmarks.md)",
    )
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
    keys = commands.add_parser("keys", help="encryption keys: init, status, rotate, reencrypt, retire")
    key_actions = keys.add_subparsers(dest="action", required=True)
    key_actions.add_parser("init", help="create ENCRYPTION_KEY_PATH and KEY_STORE_PATH (never overwrites)")
    key_actions.add_parser("status", help="every key, its state and how many documents use it")
    rotate = key_actions.add_parser("rotate", help="a new active data key (new writes use it at once)")
    rotate.add_argument("--index", action="store_true", help="rotate the index key instead")
    reencrypt = key_actions.add_parser("reencrypt", help="move every document to the active keys")
    reencrypt.add_argument("--batch", type=int, default=100, help="documents per write")
    retire = key_actions.add_parser("retire", help="retire a key no document uses any more")
    retire.add_argument("key_id")
    master = key_actions.add_parser("rotate-master", help="re-wrap the keys under a new master key")
    master.add_argument("new_master", help="file for the new master key (must not exist)")
    master.add_argument("new_key_store", help="file for the re-wrapped key store (must not exist)")
    args = parser.parse_args(argv)
    if args.command == "keys":
        return keys_command(args)
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
    if config.env == "production" and args.server == "granian":
        from notebook.api.granian_server import serve

        serve(host, port, args.workers, 4, config.tls_cert_file, config.tls_key_file)
        return 0
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
        ]
        if config.tls_cert_file:
            # the app serves HTTPS itself (a small set-up without haproxy in front)
            sys.argv += ["--certfile", config.tls_cert_file, "--keyfile", config.tls_key_file]
        sys.argv.append("notebook.api.app:create_app()")
        run()
        return 0
    from notebook.api.app import create_app, run_development_server

    run_development_server(create_app(config), host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
