"""Run the test suite with pytest: `python run_tests.py [--unit] [--integration] [--coverage] [ARGS...]`.

--unit runs tests/unit, --integration runs tests/integration (both: both; neither: every test
under pytest.ini's testpaths). --coverage adds coverage of the `notebook` package. Every other
argument goes to pytest unchanged. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent


def build_command(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--unit", action="store_true", help="run tests/unit")
    parser.add_argument("--integration", action="store_true", help="run tests/integration")
    parser.add_argument("--coverage", action="store_true", help="measure coverage of the notebook package")
    args, passthrough = parser.parse_known_args(argv)

    command = [sys.executable, "-m", "pytest"]
    if args.unit:
        command.append("tests/unit")
    if args.integration:
        command.append("tests/integration")
    if args.coverage:
        command += ["--cov=notebook", "--cov-report=term-missing"]
    return command + passthrough


def main(argv: list[str] | None = None) -> int:
    command = build_command(sys.argv[1:] if argv is None else argv)
    try:
        return subprocess.run(command, cwd=PROJECT_ROOT, check=False).returncode
    except KeyboardInterrupt:
        # pytest got the same SIGINT (same process group) and has stopped; report it like a shell.
        return 130


if __name__ == "__main__":
    sys.exit(main())
