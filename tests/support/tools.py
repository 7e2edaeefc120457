"""Command-line tools a test needs (haproxy, promtool, ...): installed from Debian when missing.

`apt-get update` runs at most once per test session; installing needs root (CI and the
development machine run the suite as root; elsewhere install the package first).
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

_lock = threading.Lock()
_updated = False


def ensure_tool(command: str, package: str) -> str:
    """The path of `command`, after `apt-get install -y <package>` when it is not on PATH."""
    global _updated
    with _lock:
        found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin")
        if found:
            return found
        apt = shutil.which("apt-get")
        if apt is None:
            raise pytest.UsageError(f"{command} is missing and there is no apt-get: install {package}")
        if not _updated:
            subprocess.run([apt, "update"], check=True, capture_output=True, timeout=600)
            _updated = True
        subprocess.run([apt, "install", "-y", package], check=True, capture_output=True, timeout=900)
        found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin")
        assert found, f"apt-get installed {package} but {command} is still not found"
        return found
