"""The composition root: builds the real collaborators from a Config, once per process."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from config.settings import Config
from notebook.core.errors import StorageError
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

log = logging.getLogger(__name__)


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
    stopping: threading.Event = field(default_factory=threading.Event)

    def install_schema(self) -> bool:
        """Create the databases, design documents and views if missing, and build the views;
        False (and a warning) while the database cannot take them, so the caller retries."""
        try:
            ensure_schema(self.databases)
        except StorageError as exc:
            log.warning("database not ready: %s", exc.reason)
            return False
        return True

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
    if install_schema:
        ensure_schema(databases)
    users = UserRepository(databases.users)
    notebook_repo = NotebookRepository(databases.notes)
    notebooks = NotebookService(notebook_repo)
    auth = AuthService(
        users=users,
        tokens=RefreshTokenRepository(databases.users),
        notebooks=notebook_repo,
        secret_key=config.secret_key,
        access_token_seconds=config.access_token_seconds,
        refresh_token_seconds=config.refresh_token_seconds,
        throttle=LoginThrottle(config.login_attempts_per_window, config.login_window_seconds),
    )
    note_repo = NoteRepository(databases.notes)
    notes_store, users_store = conflict_stores(databases.notes, databases.users)
    resolver = ConflictResolver(note_repo, notes_store, [users_store])
    notes = NoteService(note_repo, notebooks, resolver, config.revision_retention)
    manager = ReplicationManager(
        config.all_node_urls,
        list(database_names(config.db_prefix).values()),
        user=config.couchdb_user,
        password=config.couchdb_password,
        continuous=config.continuous_replication,
        retry_seconds=config.replication_retry_seconds,
        timeout=config.couchdb_timeout_seconds,
        active_node=lambda: couch.active_url,
    )
    replication = ReplicationService(manager)
    return Services(config, couch, databases, users, auth, notebooks, notes, resolver, replication)
