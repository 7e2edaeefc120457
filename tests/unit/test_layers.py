"""Import rules: the import-linter contracts in pyproject.toml hold (layers point inward, the API
uses services, services reach storage only through their Protocols)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False, timeout=300)


def test_every_import_contract_is_kept() -> None:
    result = _lint_imports()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 broken" in output
    assert "Contracts: 4 kept" in output  # every contract of pyproject.toml was checked
