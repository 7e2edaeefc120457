"""Application settings, read once from the environment and passed into the app.

`load_config()` is the only place that reads `os.environ`; everything else receives a `Config`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET_KEY = "dev-secret-key-change-me"


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for the operator."""


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Config:
    """Every setting of the application; subclasses hold per-environment defaults."""

    env: str = "development"
    debug: bool = False
    testing: bool = False
    secret_key: str = DEFAULT_SECRET_KEY
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

    replication_nodes: tuple[str, ...] = ()
    continuous_replication: bool = True
    replication_retry_seconds: int = 30
    health_probe_seconds: float = 1.0
    revision_retention: int = 100
    conflict_resolver: bool = True
    conflict_poll_seconds: float = 5.0
    # create_app waits this long for the background start-up work (schema, index builds);
    # 0 = never: a worker answers at once and /ready says "warming" until the indexes are built
    startup_wait_seconds: float = 0.0

    encryption_key_path: str = "config/encryption.key"
    key_store_path: str = "config/key_store.json"

    cors_origins: tuple[str, ...] = ("http://localhost:3000",)

    access_token_seconds: int = 15 * 60
    refresh_token_seconds: int = 30 * 24 * 3600
    login_attempts_per_window: int = 10
    login_window_seconds: int = 300

    max_request_bytes: int = 8 * 1024 * 1024
    graphql_max_depth: int = 12
    graphql_explorer: bool = True
    graphql_introspection: bool = True
    log_level: str = "INFO"

    @property
    def all_node_urls(self) -> tuple[str, ...]:
        """COUCHDB_URL first (the preferred node), then every other replication node."""
        urls = [self.couchdb_url.rstrip("/") + "/"]
        for url in self.replication_nodes:
            normalized = url.rstrip("/") + "/"
            if normalized not in urls:
                urls.append(normalized)
        return tuple(urls)

    def validate(self) -> None:
        """Raise ConfigError when this configuration must not be used."""


@dataclass(frozen=True)
class DevelopmentConfig(Config):
    env: str = "development"
    debug: bool = True


@dataclass(frozen=True)
class TestingConfig(Config):
    env: str = "testing"
    testing: bool = True
    secret_key: str = "testing-secret-key-not-for-production"
    log_level: str = "WARNING"
    health_probe_seconds: float = 0.5
    conflict_resolver: bool = False  # tests drive the resolver themselves
    startup_wait_seconds: float = 60.0  # tests start on built indexes (test_warmup.py does not)


@dataclass(frozen=True)
class ProductionConfig(Config):
    env: str = "production"
    host: str = "0.0.0.0"
    graphql_explorer: bool = False
    graphql_introspection: bool = False
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        if not self.secret_key or self.secret_key == DEFAULT_SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set to a non-default value in production")
        if len(self.secret_key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters in production")
        if not self.couchdb_user or not self.couchdb_password:
            raise ConfigError("COUCHDB_USER and COUCHDB_PASSWORD must be set in production")


CONFIG_CLASSES: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}

# environment variable -> (Config field, parser)
_ENV_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "SECRET_KEY": ("secret_key", str),
    "FLASK_HOST": ("host", str),
    "FLASK_PORT": ("port", int),
    "COUCHDB_URL": ("couchdb_url", str),
    "COUCHDB_USER": ("couchdb_user", str),
    "COUCHDB_PASSWORD": ("couchdb_password", str),
    "COUCHDB_ADMIN_USER": ("couchdb_admin_user", str),
    "COUCHDB_ADMIN_PASSWORD": ("couchdb_admin_password", str),
    "COUCHDB_DB_PREFIX": ("db_prefix", str),
    "COUCHDB_TIMEOUT_SECONDS": ("couchdb_timeout_seconds", float),
    "REPLICATION_NODES": ("replication_nodes", _list),
    "CONTINUOUS_REPLICATION": ("continuous_replication", _bool),
    "REPLICATION_RETRY_SECONDS": ("replication_retry_seconds", int),
    "HEALTH_PROBE_SECONDS": ("health_probe_seconds", float),
    "REVISION_RETENTION": ("revision_retention", int),
    "CONFLICT_RESOLVER": ("conflict_resolver", _bool),
    "CONFLICT_POLL_SECONDS": ("conflict_poll_seconds", float),
    "STARTUP_WAIT_SECONDS": ("startup_wait_seconds", float),
    "ENCRYPTION_KEY_PATH": ("encryption_key_path", str),
    "KEY_STORE_PATH": ("key_store_path", str),
    "CORS_ORIGINS": ("cors_origins", _list),
    "ACCESS_TOKEN_SECONDS": ("access_token_seconds", int),
    "LOGIN_ATTEMPTS_PER_WINDOW": ("login_attempts_per_window", int),
    "MAX_REQUEST_BYTES": ("max_request_bytes", int),
    "LOG_LEVEL": ("log_level", str),
}


def load_config(environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
    """Build the Config for FLASK_ENV from environment variables, then apply overrides."""
    environ = os.environ if environ is None else environ
    env = environ.get("FLASK_ENV", "development").strip().lower() or "development"
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
    return replace(cls(), **values)  # type: ignore[arg-type]
