"""Application settings, read once from the environment and passed into the app.

`load_config()` is the only place that reads `os.environ`; everything else receives a `Config`.
There is no default secret: production requires SECRET_KEY, development generates one on its
first run and keeps it in a file, testing draws a fresh one per process.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_SECRET_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 16
# a secret of 32 characters drawn from fewer symbols than this was typed, not generated
MIN_SECRET_DISTINCT_CHARACTERS = 5
# a fresh secret for every testing process: tokens never outlive the process that signed them
_TESTING_SECRET_KEY = secrets.token_urlsafe(48)
_TEST_KEY_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"notebook-test-keys-{os.getuid()}"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for the operator."""


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def plain_http_beyond_loopback(url: str) -> bool:
    """http:// to anything but 127.0.0.0/8, ::1 or localhost (credentials would leave the
    machine unencrypted). The app's CouchDB client has the same rule (couch/tls.py)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host in _LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _without_credentials(url: str) -> str:
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _networks(value: str) -> tuple[str, ...]:
    """IP addresses and CIDR ranges; ValueError names none of them (they are not secret, but
    the message stays one line)."""
    items = _list(value)
    for item in items:
        ipaddress.ip_network(item, strict=False)
    return items


@dataclass(frozen=True)
class Config:
    """Every setting of the application; subclasses hold per-environment defaults."""

    env: str = "production"
    # Flask/Werkzeug debug mode (the interactive debugger): only with FLASK_DEBUG=1 in development
    debug: bool = False
    testing: bool = False
    secret_key: str = ""
    # where development keeps the secret it generated on its first run
    dev_secret_key_file: str = str(PROJECT_ROOT / "var" / "dev_secret_key")
    host: str = "127.0.0.1"
    port: int = 5000

    couchdb_url: str = "http://127.0.0.1:5984/"
    couchdb_user: str = ""
    couchdb_password: str = ""
    # optional server admin for set-up only (databases, _security, design documents, replication
    # jobs); requests then use COUCHDB_USER, which needs only database membership
    couchdb_admin_user: str = ""
    couchdb_admin_password: str = ""
    db_prefix: str = "notebook_"
    couchdb_timeout_seconds: float = 10.0
    # TLS towards the nodes (docs/security.md, "TLS"): https:// node URLs are verified against
    # the system store, or only against this CA bundle; host names are checked
    couchdb_ca_file: str = ""
    # a client certificate (and its key, unless in the same PEM file) shown to every node
    couchdb_client_cert: str = ""
    couchdb_client_key: str = ""
    # production refuses http:// node URLs beyond loopback unless this says the network is safe
    couchdb_allow_plain_http: bool = False
    # the app's own HTTPS (notebook-server in production: gunicorn --certfile/--keyfile), for
    # set-ups without haproxy in front
    tls_cert_file: str = ""
    tls_key_file: str = ""

    replication_nodes: tuple[str, ...] = ()
    continuous_replication: bool = True
    replication_retry_seconds: int = 30
    # replication that runs itself (docs/replication.md): every app process repairs the mesh every
    # REPLICATION_RETRY_SECONDS, its first round after a random wait of up to this many seconds
    replication_supervisor: bool = True
    replication_start_jitter_seconds: float = 5.0
    health_probe_seconds: float = 1.0
    revision_retention: int = 100
    # activity records older than this are deleted by `notebook-server prune-activity`
    activity_retention_days: int = 365
    conflict_resolver: bool = True
    conflict_poll_seconds: float = 5.0
    # create_app waits this long for the background start-up work (schema, index builds);
    # 0 = never: a worker answers at once and /ready says "warming" until the indexes are built
    startup_wait_seconds: float = 0.0
    # quorum acknowledgement (docs/replication.md, "Quorum writes"): a document write is
    # acknowledged once this many nodes hold its exact revision; 0 = automatic (2 with several
    # nodes, 1 with one). The pushes to the other nodes get at most quorum_timeout_seconds.
    write_quorum: int = 0
    quorum_timeout_seconds: float = 5.0

    # encryption at rest (docs/security.md): on unless ENCRYPTION_ENABLED=false, which is logged
    encryption_enabled: bool = True
    encryption_key_path: str = "config/encryption.key"
    key_store_path: str = "config/key_store.json"
    # how often each app process reads the replicated key ring (a rotation reaches it this fast)
    keyring_refresh_seconds: float = 5.0
    # the read cache (database/couch/read_cache.py): documents read by id, kept correct by the
    # changes feed, polled every READ_CACHE_POLL_SECONDS; a write made elsewhere is seen at most
    # that long (plus one poll) after it reaches the node this process reads from
    read_cache_enabled: bool = True
    read_cache_mb: int = 64
    read_cache_poll_seconds: float = 0.05

    cors_origins: tuple[str, ...] = ("http://localhost:3000",)

    access_token_seconds: int = 15 * 60
    refresh_token_seconds: int = 30 * 24 * 3600

    max_request_bytes: int = 8 * 1024 * 1024
    # GraphQL bounds, checked before graphql-core validates or executes anything (api/limits.py)
    graphql_max_tokens: int = 10_000
    graphql_max_operations: int = 10
    graphql_max_fragments: int = 50
    graphql_max_selections: int = 1_000
    graphql_max_aliases: int = 30
    graphql_max_repeated_fields: int = 10
    graphql_max_root_mutations: int = 10
    graphql_max_depth: int = 12
    graphql_max_cost: int = 10_000
    graphql_list_size_estimate: int = 50
    graphql_explorer: bool = True
    # where the explorer's GraphiQL and React files are (the npm packages of package.json)
    explorer_assets_dir: str = str(PROJECT_ROOT / "node_modules")
    graphql_introspection: bool = True
    graphql_field_suggestions: bool = True
    log_level: str = "INFO"
    # GET /metrics (docs/operations.md, "Metrics"): with a token, only `Authorization: Bearer
    # <token>` gets it; without one, only a direct loopback client that no proxy forwarded
    metrics_token: str = field(default="", repr=False)
    # prometheus-client's multiprocess directory; set (and cleaned) by gunicorn_config.py
    prometheus_multiproc_dir: str = ""
    # sharing and accounts
    max_notebooks_per_user: int = 500
    max_members_per_notebook: int = 100
    max_tags_listed: int = 1000  # Query.tags: the most used ones
    max_api_keys_per_user: int = 50
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    # abuse limits (docs/security.md, "Rate limits and abuse"); counted in the throttle database
    trusted_proxies: tuple[str, ...] = ()
    login_window_seconds: int = 900
    login_failures_per_account_ip: int = 5
    login_failures_per_ip: int = 30
    login_failures_per_account: int = 50
    register_window_seconds: int = 3600
    register_per_ip: int = 10
    share_miss_window_seconds: int = 3600
    share_misses_per_user: int = 20
    password_hash_concurrency: int = 2
    password_hash_wait_seconds: float = 5.0
    throttle_cache_size: int = 10_000

    @property
    def all_node_urls(self) -> tuple[str, ...]:
        """COUCHDB_URL first (the preferred node), then every other replication node."""
        urls = [self.couchdb_url.rstrip("/") + "/"]
        for url in self.replication_nodes:
            normalized = url.rstrip("/") + "/"
            if normalized not in urls:
                urls.append(normalized)
        return tuple(urls)

    @property
    def effective_write_quorum(self) -> int:
        """WRITE_QUORUM, or when it is 0 (automatic): 2 with several nodes, 1 with one."""
        if self.write_quorum:
            return self.write_quorum
        return 2 if len(self.all_node_urls) > 1 else 1

    def plain_http_nodes(self) -> list[str]:
        """The node URLs (COUCHDB_URL, REPLICATION_NODES) that are http:// beyond loopback,
        without their credentials."""
        return [_without_credentials(url) for url in self.all_node_urls if plain_http_beyond_loopback(url)]

    def validate(self) -> None:
        """Raise ConfigError when this configuration must not be used."""
        if not self.secret_key:
            raise ConfigError("SECRET_KEY must be set")
        if not 0 <= self.write_quorum <= len(self.all_node_urls):
            raise ConfigError("WRITE_QUORUM must be 0 (automatic) or 1 to the number of database nodes")
        if self.quorum_timeout_seconds <= 0:
            raise ConfigError("QUORUM_TIMEOUT_SECONDS must be positive")
        if self.read_cache_enabled and not 0 < self.read_cache_poll_seconds <= 5:
            raise ConfigError("READ_CACHE_POLL_SECONDS must be above 0 and at most 5")
        if self.read_cache_enabled and self.read_cache_mb < 1:
            raise ConfigError("READ_CACHE_MB must be at least 1")
        if self.metrics_token and len(self.metrics_token) < MIN_METRICS_TOKEN_LENGTH:
            raise ConfigError(f"METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters")
        for name in _POSITIVE_LIMITS:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()} must be at least 1")
        self._validate_tls()

    def _validate_tls(self) -> None:
        if self.couchdb_client_key and not self.couchdb_client_cert:
            raise ConfigError("COUCHDB_CLIENT_KEY is set without COUCHDB_CLIENT_CERT")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together")
        for name in ("couchdb_ca_file", "couchdb_client_cert", "couchdb_client_key", "tls_cert_file",
                     "tls_key_file"):  # fmt: skip
            path = getattr(self, name)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"{name.upper()} {path} is not a readable file")


@dataclass(frozen=True)
class DevelopmentConfig(Config):
    env: str = "development"


@dataclass(frozen=True)
class TestingConfig(Config):
    env: str = "testing"
    testing: bool = True
    secret_key: str = _TESTING_SECRET_KEY
    log_level: str = "WARNING"
    health_probe_seconds: float = 0.5
    conflict_resolver: bool = False  # tests drive the resolver themselves
    replication_supervisor: bool = False  # tests set up replication themselves
    # every test client is 127.0.0.1: the abuse-limit tests set their own, lower limits
    register_per_ip: int = 10_000
    login_failures_per_ip: int = 10_000
    startup_wait_seconds: float = 60.0  # tests start on built indexes (test_warmup.py does not)
    # every test app of this user shares one master key and key store (created on first use)
    encryption_key_path: str = str(_TEST_KEY_DIR / "encryption.key")
    key_store_path: str = str(_TEST_KEY_DIR / "key_store.json")
    keyring_refresh_seconds: float = 1.0
    # tests write raw documents to CouchDB and read them back through the API at once; the
    # read cache's own tests (test_read_cache.py) switch it on
    read_cache_enabled: bool = False


@dataclass(frozen=True)
class ProductionConfig(Config):
    env: str = "production"
    host: str = "0.0.0.0"
    graphql_explorer: bool = False
    graphql_introspection: bool = False
    graphql_field_suggestions: bool = False
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        if not self.secret_key:
            raise ConfigError(
                "SECRET_KEY must be set in production (at least 32 random characters, "
                "e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if len(self.secret_key) < MIN_SECRET_LENGTH:
            raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters in production")
        if len(set(self.secret_key)) < MIN_SECRET_DISTINCT_CHARACTERS:
            raise ConfigError("SECRET_KEY is too repetitive to be random; generate one")
        if not self.couchdb_user or not self.couchdb_password:
            raise ConfigError("COUCHDB_USER and COUCHDB_PASSWORD must be set in production")
        if self.debug:
            raise ConfigError("FLASK_DEBUG must not be set in production (it serves a debugger)")
        plain = self.plain_http_nodes()
        if plain and not self.couchdb_allow_plain_http:
            raise ConfigError(
                f"{plain[0]} is plain HTTP beyond loopback: use https:// (COUCHDB_CA_FILE for a private "
                "CA) or set COUCHDB_ALLOW_PLAIN_HTTP=true if that network is trusted"
            )
        super().validate()


_POSITIVE_LIMITS = tuple(f.name for f in fields(Config) if f.name.startswith("graphql_max_")) + (
    "graphql_list_size_estimate",
    "max_request_bytes",
    "max_members_per_notebook",
    "max_tags_listed",
    "max_api_keys_per_user",
)


CONFIG_CLASSES: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}

# environment variable -> (Config field, parser)
_ENV_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "SECRET_KEY": ("secret_key", str),
    "DEV_SECRET_KEY_FILE": ("dev_secret_key_file", str),
    "FLASK_DEBUG": ("debug", _bool),
    "FLASK_HOST": ("host", str),
    "FLASK_PORT": ("port", int),
    "COUCHDB_URL": ("couchdb_url", str),
    "COUCHDB_USER": ("couchdb_user", str),
    "COUCHDB_PASSWORD": ("couchdb_password", str),
    "COUCHDB_ADMIN_USER": ("couchdb_admin_user", str),
    "COUCHDB_ADMIN_PASSWORD": ("couchdb_admin_password", str),
    "COUCHDB_DB_PREFIX": ("db_prefix", str),
    "COUCHDB_TIMEOUT_SECONDS": ("couchdb_timeout_seconds", float),
    "COUCHDB_CA_FILE": ("couchdb_ca_file", str),
    "COUCHDB_CLIENT_CERT": ("couchdb_client_cert", str),
    "COUCHDB_CLIENT_KEY": ("couchdb_client_key", str),
    "COUCHDB_ALLOW_PLAIN_HTTP": ("couchdb_allow_plain_http", _bool),
    "TLS_CERT_FILE": ("tls_cert_file", str),
    "TLS_KEY_FILE": ("tls_key_file", str),
    "REPLICATION_NODES": ("replication_nodes", _list),
    "CONTINUOUS_REPLICATION": ("continuous_replication", _bool),
    "REPLICATION_RETRY_SECONDS": ("replication_retry_seconds", int),
    "REPLICATION_SUPERVISOR": ("replication_supervisor", _bool),
    "REPLICATION_START_JITTER_SECONDS": ("replication_start_jitter_seconds", float),
    "HEALTH_PROBE_SECONDS": ("health_probe_seconds", float),
    "REVISION_RETENTION": ("revision_retention", int),
    "ACTIVITY_RETENTION_DAYS": ("activity_retention_days", int),
    "CONFLICT_RESOLVER": ("conflict_resolver", _bool),
    "CONFLICT_POLL_SECONDS": ("conflict_poll_seconds", float),
    "STARTUP_WAIT_SECONDS": ("startup_wait_seconds", float),
    "WRITE_QUORUM": ("write_quorum", int),
    "QUORUM_TIMEOUT_SECONDS": ("quorum_timeout_seconds", float),
    "ENCRYPTION_KEY_PATH": ("encryption_key_path", str),
    "KEY_STORE_PATH": ("key_store_path", str),
    "ENCRYPTION_ENABLED": ("encryption_enabled", _bool),
    "MAX_API_KEYS_PER_USER": ("max_api_keys_per_user", int),
    "KEYRING_REFRESH_SECONDS": ("keyring_refresh_seconds", float),
    "READ_CACHE_ENABLED": ("read_cache_enabled", _bool),
    "READ_CACHE_MB": ("read_cache_mb", int),
    "READ_CACHE_POLL_SECONDS": ("read_cache_poll_seconds", float),
    "CORS_ORIGINS": ("cors_origins", _list),
    "ACCESS_TOKEN_SECONDS": ("access_token_seconds", int),
    "MAX_REQUEST_BYTES": ("max_request_bytes", int),
    "GRAPHQL_MAX_TOKENS": ("graphql_max_tokens", int),
    "GRAPHQL_MAX_OPERATIONS": ("graphql_max_operations", int),
    "GRAPHQL_MAX_FRAGMENTS": ("graphql_max_fragments", int),
    "GRAPHQL_MAX_SELECTIONS": ("graphql_max_selections", int),
    "GRAPHQL_MAX_ALIASES": ("graphql_max_aliases", int),
    "GRAPHQL_MAX_REPEATED_FIELDS": ("graphql_max_repeated_fields", int),
    "GRAPHQL_MAX_ROOT_MUTATIONS": ("graphql_max_root_mutations", int),
    "GRAPHQL_MAX_DEPTH": ("graphql_max_depth", int),
    "GRAPHQL_MAX_COST": ("graphql_max_cost", int),
    "GRAPHQL_LIST_SIZE_ESTIMATE": ("graphql_list_size_estimate", int),
    "LOG_LEVEL": ("log_level", str),
    "EXPLORER_ASSETS_DIR": ("explorer_assets_dir", str),
    "METRICS_TOKEN": ("metrics_token", str),
    "PROMETHEUS_MULTIPROC_DIR": ("prometheus_multiproc_dir", str),
    "TRUSTED_PROXIES": ("trusted_proxies", _networks),
    "LOGIN_WINDOW_SECONDS": ("login_window_seconds", int),
    "LOGIN_FAILURES_PER_ACCOUNT_IP": ("login_failures_per_account_ip", int),
    "LOGIN_FAILURES_PER_IP": ("login_failures_per_ip", int),
    "LOGIN_FAILURES_PER_ACCOUNT": ("login_failures_per_account", int),
    "REGISTER_WINDOW_SECONDS": ("register_window_seconds", int),
    "REGISTER_PER_IP": ("register_per_ip", int),
    "SHARE_MISS_WINDOW_SECONDS": ("share_miss_window_seconds", int),
    "SHARE_MISSES_PER_USER": ("share_misses_per_user", int),
    "PASSWORD_HASH_CONCURRENCY": ("password_hash_concurrency", int),
    "PASSWORD_HASH_WAIT_SECONDS": ("password_hash_wait_seconds", float),
    "THROTTLE_CACHE_SIZE": ("throttle_cache_size", int),
    "MAX_NOTEBOOKS_PER_USER": ("max_notebooks_per_user", int),
    "MAX_MEMBERS_PER_NOTEBOOK": ("max_members_per_notebook", int),
    "MAX_TAGS_LISTED": ("max_tags_listed", int),
    "ARGON2_TIME_COST": ("argon2_time_cost", int),
    "ARGON2_MEMORY_KIB": ("argon2_memory_kib", int),
    "ARGON2_PARALLELISM": ("argon2_parallelism", int),
}


def development_secret(path: Path) -> str:
    """The secret kept in `path` (mode 0600), created with a random value on the first call."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # written under a private name, then linked into place: a concurrent first start of another
    # process either wins the link or reads the complete file, never a half-written one
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # readable by others: take that back before using it
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{path} does not hold a usable secret; delete it to get a new one")
    return secret


ENV_FILE_VARIABLE = "NOTEBOOK_ENV_FILE"


def read_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines of a .env file (comments, blank lines and `export ` skipped; one pair
    of surrounding quotes removed). A missing file is an empty one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def process_environment() -> dict[str, str]:
    """The process's environment over the .env file: `.env` in the working directory, or the
    file NOTEBOOK_ENV_FILE names ("" reads none). A variable set in the environment wins."""
    env_file = os.environ.get(ENV_FILE_VARIABLE, ".env")
    from_file = read_env_file(Path(env_file)) if env_file else {}
    return {**from_file, **os.environ}


def load_config(environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """Build the Config for FLASK_ENV (unset: production) from environment variables and overrides;
    without `environ`, from the process's environment and the .env file (process_environment).

    Development without SECRET_KEY uses the secret in DEV_SECRET_KEY_FILE, generated if missing.
    """
    environ = process_environment() if environ is None else environ
    env = environ.get("FLASK_ENV", "").strip().lower() or "production"
    if env not in CONFIG_CLASSES:
        raise ConfigError(f"FLASK_ENV must be one of {', '.join(CONFIG_CLASSES)}, not {env!r}")
    cls = CONFIG_CLASSES[env]
    values: dict[str, object] = {}
    for name, (attr, parse) in _ENV_FIELDS.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[attr] = parse(raw)
        except ValueError:
            raise ConfigError(f"{name} has an invalid value") from None
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    values.update(overrides)
    config = replace(cls(), **values)  # type: ignore[arg-type]
    if config.debug and config.env == "testing":
        config = replace(config, debug=False)  # FLASK_DEBUG is for `make run`; production refuses it
    if config.env == "development" and not config.secret_key:
        try:
            config = replace(config, secret_key=development_secret(Path(config.dev_secret_key_file)))
        except OSError as exc:
            reason = f"cannot keep the development secret in {config.dev_secret_key_file}: {exc.strerror}"
            raise ConfigError(reason) from None
    return config
