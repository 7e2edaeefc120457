"""What the README and the docs tell a newcomer to run exists: commands, scripts, files, make
targets; and they link to nothing outside the repository."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = {path: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}


def test_every_venv_command_of_the_readme_is_installed_by_the_project() -> None:
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    installed_with_dependencies = {"python", "gunicorn", "pip", "activate"}
    used = set(re.findall(r"\.venv/bin/([A-Za-z0-9_.-]+)", README))
    assert {"notebook-server", "notebook-monitor", "python"} <= used
    assert used <= scripts | installed_with_dependencies, used - scripts - installed_with_dependencies


def test_every_make_target_and_script_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, flags=re.MULTILINE))
    for target in set(re.findall(r"`make ([a-z0-9-]+)", README)) | set(
        re.findall(r"^make ([a-z0-9-]+)", README, re.M)
    ):
        assert target in targets, f"make {target}"
    for script in set(re.findall(r"\b(scripts/[a-z_]+\.py)", README)):
        assert (ROOT / script).is_file(), script


def test_every_repository_file_the_docs_name_exists() -> None:
    pattern = re.compile(
        r"`((?:deploy|docs|scripts|src|tests|config|devtools)/[A-Za-z0-9_./-]+\.[a-z]{2,8})`"
    )
    missing = [
        f"{path.name}: {name}" for path, text in DOCS.items() for name in pattern.findall(text)
        if not (ROOT / name).exists()
    ]  # fmt: skip
    assert missing == []
    for name in ("LICENSE", "Dockerfile", "docker-compose.yml", ".env.example", "gunicorn.conf.py"):
        assert (ROOT / name).is_file(), name


def test_the_docs_link_to_nothing_outside_the_repository() -> None:
    outside = [
        f"{path.name}: {line.strip()}"
        for path, text in DOCS.items()
        for line in text.splitlines()
        # the CouchDB 3 release the CouchDB 3 tests start is a tool found beside the clone
        if "../" in line and "shared/couchdb3" not in line and "COUCHDB3_DIST" not in line
    ]
    assert outside == []


def test_the_readme_warns_before_make_clean_deletes_the_notes() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `make clean`"))
    assert "var/" in row and "every note" in row
