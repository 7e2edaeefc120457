"""Application entry point: `python main.py` serves the API as configured by the environment."""

import sys

from notebook.cli import main

if __name__ == "__main__":
    sys.exit(main())
