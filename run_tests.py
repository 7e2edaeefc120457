"""Run the tests: `python run_tests.py [--unit] [--integration] [--server S] [--coverage] [ARGS...]`.

--unit runs tests/unit, --integration runs tests/integration (both: both; neither: every test
under pytest.ini's testpaths). --server picks the database server of the integration tests
(pouchdb, couchdb3 or external; it sets NOTEBOOK_TEST_SERVER, see docs/testing.md). --coverage
adds coverage of the `notebook` package. Every other argument goes to pytest unchanged. The exit
status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent


SERVERS = ("pouchdb", "couchdb3", "external")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--unit", action="store_true", help="run tests/unit")
    parser.add_argument("--integration", action="store_true", help="run tests/integration")
    parser.add_argument("--coverage", action="store_true", help="measure coverage of the notebook package")
    parser.add_argument("--server", choices=SERVERS, help="database server of the integration tests")
    return parser.parse_known_args(argv)


def build_command(argv: list[str]) -> list[str]:
    args, passthrough = parse(argv)

    command = [sys.executable, "-m", "pytest"]
    if args.unit:
        command.append("tests/unit")
    if args.integration:
        command.append("tests/integration")
    if args.coverage:
        command += ["--cov=notebook", "--cov-report=term-missing"]
    return command + passthrough


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = build_command(argv)
    env = dict(os.environ)
    server = parse(argv)[0].server
    if server:
        env["NOTEBOOK_TEST_SERVER"] = server
    try:
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=False).returncode
    except KeyboardInterrupt:
        # pytest got the same SIGINT (same process group) and has stopped; report it like a shell.
        return 130


if __name__ == "__main__":
    sys.exit(main())
