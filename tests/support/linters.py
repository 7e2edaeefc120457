"""Linters from npm for the deployment files (dclint for docker-compose.yml, dockerfilelint for
the Dockerfile), pinned here and installed on first use into var/tools/lint (not the project's
package.json: the app does not need them)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LINT_DIR = PROJECT_ROOT / "var" / "tools" / "lint"
PINNED = {"dclint": "3.1.0", "dockerfilelint": "1.8.0"}
_lock = threading.Lock()


def npm_linter(name: str) -> Path:
    """The path of the pinned linter `name`, installed with npm when missing."""
    binary = LINT_DIR / "node_modules" / ".bin" / name
    with _lock:
        if not binary.exists():
            npm = shutil.which("npm")
            assert npm, (
                "npm is needed to install the deployment linters (make deps installs Node.js tools too)"
            )
            LINT_DIR.mkdir(parents=True, exist_ok=True)
            packages = [f"{package}@{version}" for package, version in PINNED.items()]
            subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(LINT_DIR), *packages],
                check=True, capture_output=True, timeout=600,
            )  # fmt: skip
    assert binary.exists(), f"npm did not install {name}"
    return binary
