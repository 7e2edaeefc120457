"""`.env` is read when present: the environment wins, NOTEBOOK_ENV_FILE picks the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import load_config, read_env_file


def test_the_env_file_fills_what_the_environment_does_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nFLASK_ENV=testing\nexport COUCHDB_DB_PREFIX='fromfile_'\n"
        'CORS_ORIGINS="https://a.example, https://b.example"\nCOUCHDB_TIMEOUT_SECONDS=7\n\nnot a line\n'
    )
    monkeypatch.setenv("NOTEBOOK_ENV_FILE", str(env_file))
    monkeypatch.delenv("FLASK_ENV", raising=False)
    monkeypatch.delenv("COUCHDB_DB_PREFIX", raising=False)
    monkeypatch.delenv("CORS_ORIGINS", raising=False)
    monkeypatch.setenv("COUCHDB_TIMEOUT_SECONDS", "3")  # the environment wins over the file
    config = load_config()
    assert config.env == "testing" and config.db_prefix == "fromfile_"
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert config.couchdb_timeout_seconds == 3.0


def test_no_file_or_an_empty_setting_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_env_file(tmp_path / "missing") == {}
    (tmp_path / ".env").write_text("COUCHDB_DB_PREFIX=never_\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLASK_ENV", "testing")
    monkeypatch.delenv("COUCHDB_DB_PREFIX", raising=False)
    monkeypatch.setenv("NOTEBOOK_ENV_FILE", "")
    assert load_config().db_prefix == "notebook_"
    monkeypatch.delenv("NOTEBOOK_ENV_FILE")
    assert load_config().db_prefix == "never_"  # .env of the working directory by default
