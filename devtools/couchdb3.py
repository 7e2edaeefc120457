"""Apache CouchDB 3 nodes from the release in ../shared/couchdb3, through its ``nodes.py``.

Shared by the test harness (tests/support/servers.py) and the benchmarks (scripts/bench.py), so
both start CouchDB 3 the same way: ``nodes.py start --dir DIR --count N [--cluster]`` gives each
node a free loopback port and admin credentials, recorded in DIR/nodes.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DIST_ENV = "COUCHDB3_DIST"


class CouchDB3NotFound(RuntimeError):
    """nodes.py is not where COUCHDB3_DIST (or the default ../shared/couchdb3) says."""


def couchdb3_dist() -> Path:
    """Where nodes.py and the CouchDB 3 release live: COUCHDB3_DIST or ../shared/couchdb3."""
    configured = os.environ.get(DIST_ENV, "").strip()
    return Path(configured).resolve() if configured else PROJECT_ROOT.parent / "shared" / "couchdb3"


def pid_alive(pid: int | None) -> bool:
    """True while the process runs; a zombie counts as dead."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


class NodesScript:
    """`nodes.py` of the CouchDB 3 release, run for one directory of nodes."""

    def __init__(self, directory: Path) -> None:
        self.script = couchdb3_dist() / "nodes.py"
        if not self.script.exists():
            raise CouchDB3NotFound(
                f"{self.script} not found: set {DIST_ENV} to the directory holding nodes.py and the "
                "CouchDB 3 release"
            )
        self.directory = directory

    def __call__(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run(
            [sys.executable, str(self.script), args[0], "--dir", str(self.directory), *args[1:]],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"nodes.py {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def state(self) -> dict[str, Any]:
        return json.loads((self.directory / "nodes.json").read_text())

    def start(
        self, count: int = 1, cluster: bool = False, tls: tuple[Path, Path] | None = None
    ) -> dict[str, Any]:
        """Start `count` nodes (one cluster with `cluster`; each also serving HTTPS with the
        certificate and key `tls`); returns nodes.json. A failed start stops whatever it had
        started."""
        options = ["--cluster"] if cluster else []
        if tls is not None:
            options += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        try:
            self("start", "--count", str(count), *options)
        except BaseException:
            with contextlib.suppress(Exception):
                self("stop")
            raise
        return self.state()

    def stop(self) -> None:
        self("stop")
