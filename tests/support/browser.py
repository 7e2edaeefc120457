"""Headless Chromium (Debian's package, installed when missing) for tests of what a person sees."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import ensure_tool

# every host but loopback fails to resolve: a page that needs the internet shows it
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def rendered_dom(url: str, profile: Path, budget_ms: int = 15_000) -> str:
    """The DOM of `url` after its scripts ran for `budget_ms` of virtual time, with no access to
    anything but loopback; a fresh profile in `profile`."""
    chromium = ensure_tool("chromium", "chromium")
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={profile}", OFFLINE, f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
