"""The composition root: builds the real collaborators from a Config, once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from config.settings import Config
from notebook.database.conflicts import conflict_stores
from notebook.database.couch import CouchDBClient
from notebook.database.design_docs import Databases, database_names, ensure_schema, open_databases
from notebook.database.replication import ReplicationManager
from notebook.database.repository import (
    NotebookRepository,
    NoteRepository,
    RefreshTokenRepository,
    UserRepository,
)
from notebook.services.auth_service import AuthService, LoginThrottle
from notebook.services.conflict_service import ConflictResolver
from notebook.services.replication_service import ReplicationService
from notebook.services.service import NotebookService, NoteService
from notebook.warmup import Warmup


@dataclass
class Services:
    config: Config
    couch: CouchDBClient
    databases: Databases
    users: UserRepository
    auth: AuthService
    notebooks: NotebookService
    notes: NoteService
    resolver: ConflictResolver
    replication: ReplicationService
    warmup: Warmup
    stopping: threading.Event
    admin_couch: CouchDBClient | None = None  # the set-up account, when separate from `couch`

    def start_conflict_resolver(self) -> threading.Thread:
        """Follow the changes feed and settle conflicts in a daemon thread until close()."""
        thread = threading.Thread(
            target=self.resolver.run,
            args=(self.stopping, self.config.conflict_poll_seconds),
            name="conflict-resolver",
            daemon=True,
        )
        thread.start()
        return thread

    def close(self) -> None:
        self.stopping.set()
        self.replication.close()
        self.couch.close()
        if self.admin_couch is not None:
            self.admin_couch.close()


def bootstrap(config: Config, couch: CouchDBClient | None = None, install_schema: bool = True) -> Services:
    """Wire repositories and services; install databases and views unless told not to."""
    couch = couch or CouchDBClient(
        config.all_node_urls,
        user=config.couchdb_user,
        password=config.couchdb_password,
        timeout=config.couchdb_timeout_seconds,
        probe_interval=config.health_probe_seconds,
    )
    databases = open_databases(couch, config.db_prefix)
    # least privilege: with COUCHDB_ADMIN_USER set, only set-up uses that account and requests
    # go out as COUCHDB_USER, a member of the application's databases (docs/operations.md)
    admin_couch = None
    setup_databases = databases
    members: tuple[str, ...] = ()
    setup_user, setup_password = config.couchdb_user, config.couchdb_password
    if config.couchdb_admin_user:
        setup_user, setup_password = config.couchdb_admin_user, config.couchdb_admin_password
        admin_couch = CouchDBClient(
            config.all_node_urls,
            user=setup_user,
            password=setup_password,
            timeout=config.couchdb_timeout_seconds,
        )
        setup_databases = open_databases(admin_couch, config.db_prefix)
        members = (config.couchdb_user,) if config.couchdb_user else ()
    if install_schema:
        ensure_schema(setup_databases, members=members)
    stopping = threading.Event()
    # started by create_app; until then nothing is gated
    warmup = Warmup(setup_databases, stopping, members=members)
    gated = warmup.gate(databases)  # what request handling uses: cold indexes fail fast
    users = UserRepository(gated.users)
    notebook_repo = NotebookRepository(gated.notes)
    notebooks = NotebookService(notebook_repo)
    auth = AuthService(
        users=users,
        tokens=RefreshTokenRepository(gated.users),
        notebooks=notebook_repo,
        secret_key=config.secret_key,
        access_token_seconds=config.access_token_seconds,
        refresh_token_seconds=config.refresh_token_seconds,
        throttle=LoginThrottle(config.login_attempts_per_window, config.login_window_seconds),
    )
    note_repo = NoteRepository(gated.notes)
    notes_store, users_store = conflict_stores(databases.notes, databases.users)
    resolver = ConflictResolver(note_repo, notes_store, [users_store])
    notes = NoteService(note_repo, notebooks, resolver, config.revision_retention)
    manager = ReplicationManager(
        config.all_node_urls,
        list(database_names(config.db_prefix).values()),
        user=setup_user,
        password=setup_password,
        continuous=config.continuous_replication,
        retry_seconds=config.replication_retry_seconds,
        timeout=config.couchdb_timeout_seconds,
        active_node=lambda: couch.active_url,
        members=members,
    )
    replication = ReplicationService(manager)
    return Services(
        config, couch, databases, users, auth, notebooks, notes, resolver, replication, warmup, stopping,
        admin_couch,
    )  # fmt: skip
