"""Gunicorn settings: gunicorn's own log lines in the application's JSON format, on stderr.

`notebook-server` passes them with `--config python:notebook.api.gunicorn_config`; a bare
`gunicorn` started in the repository root reads them through its `gunicorn.conf.py`.
"""

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
