"""The disk-loss drill (docs/replication.md, "Quorum writes, read-your-writes and failback").

    .venv/bin/python scripts/disk_loss_drill.py [--server pouchdb|couchdb3] [--quorum 1|2|both]

Starts three throwaway local nodes of the server (pouchdb-server, or CouchDB 3 from
../shared/couchdb3) in a replication mesh and the real app process over them; 4 writers use the
app for 20 s while the preferred node is SIGKILLed, its data directory deleted, and 5 s later it
is started empty and refilled by replication. Prints, per WRITE_QUORUM, the figures as JSON
(acknowledged writes, how many were lost, reads older than their reader's own write, failed
requests, whether every node ended with every write and the app failed back). Exit status 0
when WRITE_QUORUM=2 lost nothing (WRITE_QUORUM=1 only reports).

It is tests/integration/test_disk_loss.py, run on its own: the drill and the test are one code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "var" / "test-results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", choices=["pouchdb", "couchdb3"], default="pouchdb")
    parser.add_argument("--quorum", choices=["1", "2", "both"], default="both")
    args = parser.parse_args(argv)
    selection = {"1": "quorum_1", "2": "quorum_2", "both": "quorum"}[args.quorum]
    command = [
        sys.executable, "-m", "pytest", "tests/integration/test_disk_loss.py",
        "-k", selection, "-q", "-s", "-p", "no:cacheprovider",
    ]  # fmt: skip
    env = {**os.environ, "NOTEBOOK_TEST_SERVER": args.server}
    status = subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=False).returncode
    for quorum in ("2", "1"):
        if args.quorum in (quorum, "both"):
            path = RESULTS / f"disk_loss-{args.server}-w{quorum}.json"
            if path.exists():
                print(f"\nWRITE_QUORUM={quorum}: {path}")
                print(json.dumps(json.loads(path.read_text()), indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
