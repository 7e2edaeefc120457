"""The composition root: builds the real collaborators from a Config, once per process."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher

from config.settings import Config, ConfigError
from notebook.core.domain import User
from notebook.database.activity_repository import ActivityRepository
from notebook.database.api_key_repository import ApiKeyRepository
from notebook.database.conflicts import conflict_stores
from notebook.database.couch import CouchDBClient
from notebook.database.couch.read_cache import CacheFollower, ReadCache
from notebook.database.couch.tls import CouchTLS, TLSConfigError
from notebook.database.design_docs import Databases, database_names, ensure_schema, open_databases
from notebook.database.keyring_sync import KeyRingSync
from notebook.database.note_codec import NoteCodec
from notebook.database.replication import ReplicationManager
from notebook.database.repository import (
    MembershipRepository,
    NotebookRepository,
    NoteRepository,
    RefreshTokenRepository,
    UserRepository,
    memberships_changed_by,
)
from notebook.database.throttle_repository import ThrottleRepository
from notebook.services.activity_service import ActivityService
from notebook.services.analytics_service import AnalyticsService
from notebook.services.api_key_service import ApiKeyService, looks_like_api_key
from notebook.services.auth_service import AuthService
from notebook.services.conflict_service import ConflictResolver
from notebook.services.note_service import NoteService
from notebook.services.notebook_service import NotebookService
from notebook.services.permissions import PermissionPolicy
from notebook.services.rate_limits import (
    AbuseLimits,
    AttemptCounter,
    LoginLimits,
    PasswordHashing,
    RegisterLimits,
    ShareLimits,
)
from notebook.services.replication_service import ReplicationService
from notebook.utils.key_store import KeyRing, KeyStoreError, KeyStoreFile, open_key_ring
from notebook.warmup import Warmup

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
    permissions: PermissionPolicy
    warmup: Warmup
    stopping: threading.Event
    activity: ActivityService
    analytics: AnalyticsService
    api_keys: ApiKeyService
    admin_couch: CouchDBClient | None = None  # the set-up account, when separate from `couch`
    keyring: KeyRingSync | None = None  # None when encryption at rest is off
    cache_follower: CacheFollower | None = None  # None when READ_CACHE_ENABLED is off

    def authenticate(self, bearer: str, client_ip: str = "") -> tuple[User, str | None]:
        """The user of a Bearer credential, and the scope of the API key it is (None for an
        access token): the one place both kinds are told apart, for GraphQL and REST alike."""
        if looks_like_api_key(bearer):
            user, key = self.api_keys.authenticate(bearer, client_ip)
            return user, key.scope
        return self.auth.authenticate(bearer), None

    def start_keyring_sync(self) -> threading.Thread | None:
        """Follow the replicated key ring in a daemon thread until close()."""
        if self.keyring is None:
            return None
        thread = threading.Thread(
            target=self.keyring.run,
            args=(self.stopping, self.config.keyring_refresh_seconds),
            name="keyring-sync",
            daemon=True,
        )
        thread.start()
        return thread

    def start_read_cache(self) -> threading.Thread | None:
        """Follow the changes feed for the read cache in a daemon thread until close(); the
        cache serves nothing until the follower's first round has taken its positions."""
        if self.cache_follower is None:
            return None
        thread = threading.Thread(
            target=self.cache_follower.run, args=(self.stopping,), name="read-cache", daemon=True
        )
        thread.start()
        return thread

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

    def start_replication_supervisor(self) -> threading.Thread:
        """Set up and repair replication in a daemon thread until close(): every app process
        does it, idempotently, at its own random phase (docs/replication.md)."""
        thread = threading.Thread(
            target=self.replication.supervise,
            args=(
                self.stopping,
                float(self.config.replication_retry_seconds),
                self.config.replication_start_jitter_seconds,
            ),
            name="replication-supervisor",
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
        if self.keyring is not None:
            self.keyring.notes.client.close()
        if self.cache_follower is not None:
            self.cache_follower.close()


def abuse_limits(config: Config, store: ThrottleRepository) -> AbuseLimits:
    login = LoginLimits(
        window_seconds=config.login_window_seconds,
        per_account_ip=config.login_failures_per_account_ip,
        per_ip=config.login_failures_per_ip,
        per_account=config.login_failures_per_account,
    )
    register = RegisterLimits(window_seconds=config.register_window_seconds, per_ip=config.register_per_ip)
    share = ShareLimits(
        window_seconds=config.share_miss_window_seconds, misses_per_user=config.share_misses_per_user
    )
    longest = max(login.window_seconds, register.window_seconds, share.window_seconds)
    return AbuseLimits(AttemptCounter(store, longest, config.throttle_cache_size), login, register, share)


def open_keys(config: Config) -> KeyRing | None:
    """The key ring of ENCRYPTION_KEY_PATH and KEY_STORE_PATH (made on first use outside
    production); None, logged, when encryption at rest is turned off. ConfigError with a
    one-line reason when the keys cannot be used."""
    if not config.encryption_enabled:
        log.warning("encryption at rest is OFF (ENCRYPTION_ENABLED=false): note text is stored in clear")
        return None
    try:
        return open_key_ring(
            Path(config.encryption_key_path), Path(config.key_store_path), create=config.env != "production"
        )
    except KeyStoreError as exc:
        raise ConfigError(str(exc)) from None


def couch_tls(config: Config) -> CouchTLS:
    """The process's one TLS setting for the CouchDB nodes (COUCHDB_CA_FILE, COUCHDB_CLIENT_CERT,
    COUCHDB_CLIENT_KEY), loaded now: ConfigError with a one-line reason when it cannot be."""
    tls = CouchTLS(config.couchdb_ca_file, config.couchdb_client_cert, config.couchdb_client_key)
    try:
        tls.context()
    except TLSConfigError as exc:
        raise ConfigError(str(exc)) from None
    return tls


def keyring_sync(config: Config, ring: KeyRing | None, tls: CouchTLS | None = None) -> KeyRingSync | None:
    """The replicated key ring's follower, on a client of its own: its background reads are
    not counted as the requests' cost."""
    if ring is None:
        return None
    client = CouchDBClient(
        config.all_node_urls,
        user=config.couchdb_user,
        password=config.couchdb_password,
        timeout=config.couchdb_timeout_seconds,
        tls=tls or couch_tls(config),
    )
    return KeyRingSync(
        ring, open_databases(client, config.db_prefix).notes, KeyStoreFile(Path(config.key_store_path))
    )


def read_cache(config: Config, couch: CouchDBClient, tls: CouchTLS) -> CacheFollower | None:
    """The read cache of the users and notes databases on `couch`, and its follower of the
    changes feed on a client of its own (its polls are not counted as the requests' cost)."""
    if not config.read_cache_enabled:
        return None
    names = database_names(config.db_prefix)
    cache = ReadCache(
        [names["users"], names["notes"]], config.read_cache_mb * 1024 * 1024, derived=memberships_changed_by
    )
    couch.read_cache = cache
    feed_client = CouchDBClient(
        config.all_node_urls,
        user=config.couchdb_user,
        password=config.couchdb_password,
        timeout=config.couchdb_timeout_seconds,
        tls=tls,
    )
    return CacheFollower(cache, feed_client, lambda: couch.active_url, config.read_cache_poll_seconds)


def bootstrap(config: Config, couch: CouchDBClient | None = None, install_schema: bool = True) -> Services:
    """Wire repositories and services; install databases and views unless told not to."""
    tls = couch_tls(config)  # one for every client of this process
    couch = couch or CouchDBClient(
        config.all_node_urls,
        user=config.couchdb_user,
        password=config.couchdb_password,
        timeout=config.couchdb_timeout_seconds,
        probe_interval=config.health_probe_seconds,
        write_quorum=config.effective_write_quorum,
        quorum_timeout=config.quorum_timeout_seconds,
        quorum_exempt=(database_names(config.db_prefix)["throttle"],),  # couch/quorum.py: why
        tls=tls,
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
            tls=tls,
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
    memberships = MembershipRepository(gated.notes)
    limits = abuse_limits(config, ThrottleRepository(gated.throttle))
    notebooks = NotebookService(
        notebook_repo,
        memberships,
        users,
        config.max_notebooks_per_user,
        max_members_per_notebook=config.max_members_per_notebook,
        share_misses=limits,
    )
    activity_store = ActivityRepository(gated.notes, gated.users, gated.activity)
    activity = ActivityService(activity_store, notebooks, config.activity_retention_days)
    tokens = RefreshTokenRepository(gated.users)
    auth = AuthService(
        users=users,
        tokens=tokens,
        notebooks=notebook_repo,
        secret_key=config.secret_key,
        access_token_seconds=config.access_token_seconds,
        refresh_token_seconds=config.refresh_token_seconds,
        limits=limits,
        hashing=PasswordHashing(
            config.password_hash_concurrency,
            config.password_hash_wait_seconds,
            PasswordHasher(
                time_cost=config.argon2_time_cost,
                memory_cost=config.argon2_memory_kib,
                parallelism=config.argon2_parallelism,
            ),
        ),
        memberships=memberships,
        activity=activity,
    )
    keys = keyring_sync(config, open_keys(config), tls)
    codec = (
        NoteCodec(keys.ring, refresh=keys.refresh, before_write=keys.ensure_published)
        if keys
        else NoteCodec()
    )
    note_repo = NoteRepository(gated.notes, codec=codec)
    notes_store, users_store = conflict_stores(databases.notes, databases.users)
    resolver = ConflictResolver(note_repo, notes_store, [users_store], end_session=auth.end_session)
    notes = NoteService(note_repo, notebooks, resolver, config.revision_retention, config.max_tags_listed)
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
        member_passwords={config.couchdb_user: config.couchdb_password} if members else None,
        node_list_database=databases.users.name,
        tls=tls,
    )
    replication = ReplicationService(manager)
    permissions = PermissionPolicy(notebooks, note_repo.get)
    return Services(
        config, couch, databases, users, auth, notebooks, notes, resolver, replication, permissions,
        warmup, stopping, activity, AnalyticsService(activity_store, notes),
        ApiKeyService(ApiKeyRepository(gated.users), users, limits, config.max_api_keys_per_user),
        admin_couch, keys, read_cache(config, couch, tls),
    )  # fmt: skip
