"""`make cluster` (scripts/dev_server.py --nodes 2): a second SIGTERM during its clean-up.

It once stopped with a traceback in 1 of 6 shutdowns when a second SIGTERM arrived while it was
stopping its nodes, which were then stopped only by an atexit hook. Both problems are checked by
sending SIGTERM again and again for as long as the clean-up runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.local_server import free_port
from tests.support.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_SETTINGS_PREFIXES = ("FLASK_", "COUCHDB_", "SECRET_KEY", "REPLICATION_", "CONFLICT_", "LOG_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ", 1)[1][0] != "Z"


def test_a_second_sigterm_during_clean_up_stops_the_nodes_without_a_traceback(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(_SETTINGS_PREFIXES)}
    env.update(FLASK_ENV="development", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    stdout_path, stderr_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    command = [
        sys.executable, str(PROJECT_ROOT / "scripts" / "dev_server.py"),
        "--nodes", "2", "--data-dir", str(tmp_path / "data"),
        "--db-port", str(free_port()), "--port", str(free_port()), "--no-restart",
    ]  # fmt: skip
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        assert wait_until(lambda: "Press Ctrl-C" in stdout_path.read_text() or process.poll() is not None, 90)
        assert process.poll() is None, stderr_path.read_text()
        started = stdout_path.read_text()
        node_pids = [int(pid) for pid in re.findall(r"database node\d: \S+ \(\S+, pid (\d+)", started)]
        assert len(node_pids) == 2 and all(_alive(pid) for pid in node_pids)

        repeats = 0
        while process.poll() is None and repeats < 2000:  # SIGTERM, then again throughout the clean-up
            process.send_signal(signal.SIGTERM)
            repeats += 1
            time.sleep(0.005)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out, err = stdout_path.read_text(), stderr_path.read_text()
    assert "Traceback" not in err and "Traceback" not in out, err
    assert "already stopping" in out  # the repeated signals did arrive during the clean-up
    assert "database nodes stopped" in out
    assert not [pid for pid in node_pids if _alive(pid)]  # stopped by the clean-up, not left behind
