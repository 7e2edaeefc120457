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


# -- TLS towards CouchDB and the app's own HTTPS ----------------------------------------------------


def test_tls_settings_are_read_from_the_environment(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "app-cert", "app-key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(
        environ=_production(
            COUCHDB_URL="https://couch1.internal:6984/",
            COUCHDB_CA_FILE=str(files["ca"]),
            COUCHDB_CLIENT_CERT=str(files["cert"]),
            COUCHDB_CLIENT_KEY=str(files["key"]),
            TLS_CERT_FILE=str(files["app-cert"]),
            TLS_KEY_FILE=str(files["app-key"]),
        )
    )
    assert config.couchdb_ca_file == str(files["ca"])
    assert (config.couchdb_client_cert, config.couchdb_client_key) == (str(files["cert"]), str(files["key"]))
    assert (config.tls_cert_file, config.tls_key_file) == (str(files["app-cert"]), str(files["app-key"]))
    assert config.couchdb_allow_plain_http is False
    config.validate()


def test_tls_settings_default_to_the_system_store_and_no_certificates() -> None:
    config = load_config(environ=_production())
    assert (config.couchdb_ca_file, config.couchdb_client_cert, config.couchdb_client_key) == ("", "", "")
    assert (config.tls_cert_file, config.tls_key_file) == ("", "")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5984/",
        "http://127.0.0.53:5984/",
        "http://localhost:5984/",
        "http://[::1]:5984/",
        "https://10.0.0.4:6984/",
        "https://couch1.internal:6984/",
    ],
)
def test_production_accepts_https_and_loopback_http_nodes(url: str) -> None:
    load_config(environ=_production(COUCHDB_URL=url, REPLICATION_NODES="https://couch2:6984/")).validate()


@pytest.mark.parametrize(
    ("couchdb_url", "replication_nodes", "refused"),
    [
        ("http://10.0.0.4:5984/", "", "http://10.0.0.4:5984/"),
        ("http://couch1:5984/", "", "http://couch1:5984/"),
        ("https://10.0.0.4:6984/", "http://127.0.0.1:5984/,http://10.0.0.5:5984/", "http://10.0.0.5:5984/"),
        ("http://[2001:db8::1]:5984/", "", "http://[2001:db8::1]:5984/"),
        ("http://localhost.example.com:5984/", "", "http://localhost.example.com:5984/"),
    ],
)
def test_production_refuses_plain_http_beyond_loopback(
    couchdb_url: str, replication_nodes: str, refused: str
) -> None:
    environ = _production(COUCHDB_URL=couchdb_url, REPLICATION_NODES=replication_nodes)
    with pytest.raises(ConfigError) as raised:
        load_config(environ=environ).validate()
    _assert_operator_message(raised.value)
    assert refused in str(raised.value)
    assert "COUCHDB_ALLOW_PLAIN_HTTP" in str(raised.value)
    # the operator's explicit opt-in, and only that, lets it run
    load_config(environ={**environ, "COUCHDB_ALLOW_PLAIN_HTTP": "true"}).validate()
    with pytest.raises(ConfigError):
        load_config(environ={**environ, "COUCHDB_ALLOW_PLAIN_HTTP": "false"}).validate()


def test_the_plain_http_refusal_shows_no_credentials_of_the_url() -> None:
    environ = _production(COUCHDB_URL="http://admin:url-password-value@10.0.0.4:5984/")
    with pytest.raises(ConfigError) as raised:
        load_config(environ=environ).validate()
    _assert_operator_message(raised.value, "url-password-value", "admin:")
    assert "http://10.0.0.4:5984/" in str(raised.value)


def test_plain_http_nodes_are_accepted_outside_production(dev_environ: dict[str, str]) -> None:
    load_config(environ={**dev_environ, "COUCHDB_URL": "http://10.0.0.4:5984/"}).validate()
    load_config(environ={"FLASK_ENV": "testing", "COUCHDB_URL": "http://10.0.0.4:5984/"}).validate()


def test_tls_files_must_exist_and_go_together(tmp_path: Path) -> None:
    present = tmp_path / "present.pem"
    present.write_text("pem")
    missing = str(tmp_path / "missing.pem")
    cases = [
        ({"COUCHDB_CA_FILE": missing}, "COUCHDB_CA_FILE"),
        ({"COUCHDB_CLIENT_CERT": missing}, "COUCHDB_CLIENT_CERT"),
        ({"COUCHDB_CLIENT_KEY": str(present)}, "COUCHDB_CLIENT_KEY is set without COUCHDB_CLIENT_CERT"),
        ({"TLS_CERT_FILE": str(present)}, "TLS_CERT_FILE and TLS_KEY_FILE go together"),
        ({"TLS_CERT_FILE": str(present), "TLS_KEY_FILE": missing}, "TLS_KEY_FILE"),
    ]
    for changes, expected in cases:
        with pytest.raises(ConfigError) as raised:
            load_config(environ=_production(**changes)).validate()
        _assert_operator_message(raised.value)
        assert expected in str(raised.value), changes


def test_nodes_add_refuses_a_plain_http_node_beyond_loopback_in_production(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from notebook.cli import main

    monkeypatch.setenv("NOTEBOOK_ENV_FILE", "")
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COUCHDB_URL", "https://couch1.internal:6984/")
    # refused before anything connects: nothing listens at these names
    assert main(["nodes", "add", "http://admin:url-pw-value@couch4.internal:5984/"]) == 2
    error = capsys.readouterr().err
    assert "plain HTTP beyond loopback" in error and "url-pw-value" not in error
    assert error.count("\n") == 1
