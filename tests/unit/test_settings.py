"""config/settings.py: environment parsing and the production safety checks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from config import settings
from config.settings import (
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    load_config,
)

# Not imported by name: pytest would try to collect a class called Test*.
TESTING_CONFIG = settings.TestingConfig

GOOD_SECRET = "s3cr3t-" + "x" * 40
PRODUCTION = {
    "FLASK_ENV": "production",
    "SECRET_KEY": GOOD_SECRET,
    "COUCHDB_USER": "notebook",
    "COUCHDB_PASSWORD": "couch-password-value",
}


def _production(**changes: str | None) -> dict[str, str]:
    environ = dict(PRODUCTION)
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def _assert_operator_message(exc: ConfigError, *secrets: str) -> None:
    message = str(exc)
    assert message
    assert "\n" not in message
    for secret in secrets:
        assert secret not in message


@pytest.fixture
def dev_environ(tmp_path: Path) -> dict[str, str]:
    """Development settings whose generated secret lives in a temporary directory."""
    return {"FLASK_ENV": "development", "DEV_SECRET_KEY_FILE": str(tmp_path / "var" / "dev_secret_key")}


# -- environments ---------------------------------------------------------------------------------


def test_unset_environment_is_production_and_refuses_to_run_without_settings() -> None:
    config = load_config(environ={})
    assert isinstance(config, ProductionConfig)
    assert config.env == "production"
    assert config.debug is False
    assert config.secret_key == ""
    with pytest.raises(ConfigError) as info:
        config.validate()
    _assert_operator_message(info.value)
    assert "SECRET_KEY" in str(info.value)


@pytest.mark.parametrize(
    ("value", "cls"),
    [
        ("development", DevelopmentConfig),
        ("testing", TESTING_CONFIG),
        ("production", ProductionConfig),
        (" Testing ", TESTING_CONFIG),
        ("", ProductionConfig),
    ],
)
def test_flask_env_selects_the_config_class(value: str, cls: type) -> None:
    environ = _production(FLASK_ENV=value)
    assert type(load_config(environ=environ)) is cls


@pytest.mark.parametrize("value", ["prod", "staging", "dev"])
def test_invalid_flask_env_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"FLASK_ENV": value})
    _assert_operator_message(info.value)
    assert "FLASK_ENV" in str(info.value)


def test_load_config_does_not_read_os_environ_when_given_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_ENV", "testing")
    monkeypatch.setenv("COUCHDB_URL", "http://elsewhere:5984/")
    config = load_config(environ={})
    assert config.env == "production"
    assert config.couchdb_url == "http://127.0.0.1:5984/"


# -- production safety ----------------------------------------------------------------------------


def test_production_with_complete_settings_validates() -> None:
    config = load_config(environ=PRODUCTION)
    assert isinstance(config, ProductionConfig)
    config.validate()
    assert config.graphql_introspection is False
    assert config.graphql_explorer is False
    assert config.cors_origins == ()


@pytest.mark.parametrize("secret", [None, "", "a" * 40, "ab" * 30])
def test_production_refuses_missing_or_repetitive_secret_key(secret: str | None) -> None:
    config = load_config(environ=_production(SECRET_KEY=secret))
    with pytest.raises(ConfigError) as info:
        config.validate()
    _assert_operator_message(info.value, *([secret] if secret else []))
    assert "SECRET_KEY" in str(info.value)


def test_production_refuses_the_debugger() -> None:
    config = load_config(environ=_production(FLASK_DEBUG="1"))
    with pytest.raises(ConfigError) as info:
        config.validate()
    _assert_operator_message(info.value, GOOD_SECRET)
    assert "FLASK_DEBUG" in str(info.value)


def test_debugger_only_when_asked_for_in_development(dev_environ: dict[str, str]) -> None:
    assert load_config(environ=dev_environ).debug is False
    assert load_config(environ={**dev_environ, "FLASK_DEBUG": "1"}).debug is True
    assert load_config(environ={"FLASK_ENV": "testing", "FLASK_DEBUG": "1"}).debug is False


def test_the_example_environment_file_holds_no_usable_secret() -> None:
    example = (settings.PROJECT_ROOT / ".env.example").read_text()
    values = dict(
        line.split("=", 1) for line in example.splitlines() if "=" in line and not line.startswith("#")
    )
    assert values["SECRET_KEY"] == ""
    assert "FLASK_ENV" not in values or values["FLASK_ENV"] in ("", "production")
    with pytest.raises(ConfigError):
        load_config(environ={**values, "FLASK_ENV": "production"}).validate()


def test_production_refuses_short_secret_key_without_echoing_it() -> None:
    secret = "short-but-secret-value"
    config = load_config(environ=_production(SECRET_KEY=secret))
    with pytest.raises(ConfigError) as info:
        config.validate()
    _assert_operator_message(info.value, secret)
    assert "SECRET_KEY" in str(info.value)


@pytest.mark.parametrize("missing", ["COUCHDB_USER", "COUCHDB_PASSWORD"])
def test_production_refuses_missing_couchdb_credentials(missing: str) -> None:
    environ = _production(**{missing: None})
    config = load_config(environ=environ)
    with pytest.raises(ConfigError) as info:
        config.validate()
    _assert_operator_message(info.value, GOOD_SECRET, PRODUCTION["COUCHDB_PASSWORD"])
    assert missing in str(info.value)


def test_production_refuses_empty_couchdb_password() -> None:
    config = load_config(environ=_production(COUCHDB_PASSWORD=""))
    with pytest.raises(ConfigError) as info:
        config.validate()
    _assert_operator_message(info.value, GOOD_SECRET)


def test_invalid_number_is_reported_by_name_not_value() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"FLASK_PORT": "5000-secret-ish"})
    _assert_operator_message(info.value, "5000-secret-ish")
    assert "FLASK_PORT" in str(info.value)


def test_development_and_testing_accept_defaults(dev_environ: dict[str, str]) -> None:
    load_config(environ=dev_environ).validate()
    load_config(environ={"FLASK_ENV": "testing"}).validate()


# -- generated secrets ----------------------------------------------------------------------------


def test_development_generates_a_private_secret_once_and_reuses_it(dev_environ: dict[str, str]) -> None:
    path = Path(dev_environ["DEV_SECRET_KEY_FILE"])
    first = load_config(environ=dev_environ).secret_key
    assert len(first) >= settings.MIN_SECRET_LENGTH
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().strip() == first
    assert load_config(environ=dev_environ).secret_key == first
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no draft left behind


def test_development_secrets_differ_between_checkouts(tmp_path: Path) -> None:
    environs = [{"FLASK_ENV": "development", "DEV_SECRET_KEY_FILE": str(tmp_path / name)} for name in "abc"]
    secrets = {load_config(environ=environ).secret_key for environ in environs}
    assert len(secrets) == 3


def test_a_readable_development_secret_is_made_private(dev_environ: dict[str, str]) -> None:
    path = Path(dev_environ["DEV_SECRET_KEY_FILE"])
    secret = load_config(environ=dev_environ).secret_key
    os.chmod(path, 0o644)
    assert load_config(environ=dev_environ).secret_key == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_development_secret_is_a_config_error(dev_environ: dict[str, str]) -> None:
    path = Path(dev_environ["DEV_SECRET_KEY_FILE"])
    path.parent.mkdir(parents=True)
    path.write_text("short\n")
    with pytest.raises(ConfigError) as info:
        load_config(environ=dev_environ)
    _assert_operator_message(info.value, "short")


def test_development_uses_secret_key_when_given(dev_environ: dict[str, str]) -> None:
    config = load_config(environ={**dev_environ, "SECRET_KEY": GOOD_SECRET})
    assert config.secret_key == GOOD_SECRET
    assert not Path(dev_environ["DEV_SECRET_KEY_FILE"]).exists()


def test_testing_secret_is_random_per_process_and_not_in_the_source() -> None:
    secret = load_config(environ={"FLASK_ENV": "testing"}).secret_key
    assert len(secret) >= settings.MIN_SECRET_LENGTH
    assert secret not in Path(settings.__file__).read_text()
    assert load_config(environ={"FLASK_ENV": "testing"}).secret_key == secret  # one per process


# -- GraphQL limits -------------------------------------------------------------------------------


def test_graphql_limits_are_read_from_the_environment() -> None:
    config = load_config(
        environ={
            "FLASK_ENV": "testing",
            "GRAPHQL_MAX_DEPTH": "7",
            "GRAPHQL_MAX_COST": "900",
            "GRAPHQL_MAX_ALIASES": "3",
        }
    )
    assert (config.graphql_max_depth, config.graphql_max_cost, config.graphql_max_aliases) == (7, 900, 3)


def test_a_graphql_limit_below_one_is_refused() -> None:
    config = load_config(environ={"FLASK_ENV": "testing", "GRAPHQL_MAX_COST": "0"})
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert "GRAPHQL_MAX_COST" in str(info.value)


def test_introspection_explorer_and_suggestions_are_off_in_production(dev_environ: dict[str, str]) -> None:
    production = load_config(environ=PRODUCTION)
    assert not (production.graphql_introspection or production.graphql_explorer)
    assert not production.graphql_field_suggestions
    development = load_config(environ=dev_environ)
    assert development.graphql_introspection and development.graphql_explorer
    assert development.graphql_field_suggestions


# -- value parsing --------------------------------------------------------------------------------


def test_replication_nodes_are_parsed_as_a_comma_separated_list() -> None:
    config = load_config(
        environ={"REPLICATION_NODES": " http://127.0.0.1:5985/ , http://127.0.0.1:5986,, ,http://c:5984/ "}
    )
    assert config.replication_nodes == (
        "http://127.0.0.1:5985/",
        "http://127.0.0.1:5986",
        "http://c:5984/",
    )


def test_empty_replication_nodes_keep_the_default() -> None:
    assert load_config(environ={"REPLICATION_NODES": ""}).replication_nodes == ()


def test_cors_origins_are_parsed_as_a_list() -> None:
    config = load_config(environ={"CORS_ORIGINS": "https://a.example, https://b.example"})
    assert config.cors_origins == ("https://a.example", "https://b.example")


def test_cors_origins_default_per_environment() -> None:
    assert load_config(environ={"FLASK_ENV": "testing"}).cors_origins == ("http://localhost:3000",)
    assert load_config(environ=PRODUCTION).cors_origins == ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False), ("no", False)],
)
def test_boolean_parsing(raw: str, expected: bool) -> None:
    assert load_config(environ={"CONTINUOUS_REPLICATION": raw}).continuous_replication is expected


def test_numbers_are_parsed() -> None:
    config = load_config(
        environ={"FLASK_PORT": "8080", "COUCHDB_TIMEOUT_SECONDS": "2.5", "HEALTH_PROBE_SECONDS": "0.25"}
    )
    assert config.port == 8080
    assert config.couchdb_timeout_seconds == 2.5
    assert config.health_probe_seconds == 0.25


def test_overrides_win_over_environment_and_unknown_ones_are_refused() -> None:
    config = load_config(environ={"COUCHDB_URL": "http://a:5984/"}, couchdb_url="http://b:5984/")
    assert config.couchdb_url == "http://b:5984/"
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, no_such_setting=1)
    _assert_operator_message(info.value)


def test_config_is_immutable() -> None:
    config = load_config(environ={})
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


# -- node urls ------------------------------------------------------------------------------------


def test_all_node_urls_puts_couchdb_url_first_and_dedupes() -> None:
    config = load_config(
        environ={
            "COUCHDB_URL": "http://127.0.0.1:5984",
            "REPLICATION_NODES": "http://127.0.0.1:5985/,http://127.0.0.1:5984/,http://127.0.0.1:5985,"
            "http://127.0.0.1:5986/",
        }
    )
    assert config.all_node_urls == (
        "http://127.0.0.1:5984/",
        "http://127.0.0.1:5985/",
        "http://127.0.0.1:5986/",
    )


def test_all_node_urls_with_a_single_node() -> None:
    config = load_config(environ={"COUCHDB_URL": "http://127.0.0.1:5999/"})
    assert config.all_node_urls == ("http://127.0.0.1:5999/",)
