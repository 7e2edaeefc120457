"""Gunicorn settings: gunicorn's own log lines in the application's JSON format, on stderr.

`notebook-server` passes them with `--config python:notebook.api.gunicorn_config`; a bare
`gunicorn` started in the repository root reads them through its `gunicorn.conf.py`.

Loading them checks the application's configuration first: an unsafe production setup stops
gunicorn with a one-line reason before it logs, binds or boots a worker (a worker failing in
`create_app()` would print a traceback and leave gunicorn to report "Worker failed to boot").
"""

import sys

from config.settings import ConfigError, load_config


def refuse_unusable_configuration() -> None:
    """Exit with status 2 and one line on stderr when the environment's Config must not be used."""
    try:
        load_config().validate()
    except ConfigError as exc:
        print(f"notebook: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


refuse_unusable_configuration()

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "notebook.utils.logging.JsonFormatter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        # the application logs every request itself, with its request id
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
    },
}
