"""`notebook-server --server granian`: the app under granian's WSGI mode, in production.

granian (a Rust HTTP server) served `note(id)` about 1.45 times as many requests per second as
gunicorn on the same machine, data and worker count (docs/benchmarks.md, "gunicorn and
granian"); gunicorn stays supported and is what `--server gunicorn` runs.

The same settings as under gunicorn (api/gunicorn_config.py, whose checks and metrics-directory
hooks are reused): the configuration is checked before anything binds (an unsafe production
set-up exits 2 with one line), `--workers` processes of 4 threads each, the prometheus-client
multiprocess directory, TLS 1.2 or newer with TLS_CERT_FILE/TLS_KEY_FILE, JSON log lines on
stderr, SIGTERM lets requests in flight finish for `graceful_timeout` seconds, and a worker that
dies is started again. What gunicorn has and granian does not: a worker that hangs is not
replaced after `timeout` seconds, and the live gauges of a dead worker are not dropped.
"""

from __future__ import annotations

from pathlib import Path

APP_FACTORY = "notebook.api.app:create_app"


def serve(host: str, port: int, workers: int, threads: int, cert_file: str = "", key_file: str = "") -> None:
    from granian import Granian
    from granian.constants import Interfaces, SSLProtocols
    from granian.log import LogLevels

    # importing the gunicorn settings checks the configuration (SystemExit 2 when unusable)
    from notebook.api import gunicorn_config as settings

    settings.on_starting(None)  # the metrics directory, inherited by every worker
    logging = {
        "formatters": settings.logconfig_dict["formatters"],
        "handlers": settings.logconfig_dict["handlers"],
        "loggers": {
            "_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
    server = Granian(
        APP_FACTORY,
        factory=True,
        interface=Interfaces.WSGI,
        address=host,
        port=port,
        workers=workers,
        blocking_threads=threads,
        websockets=False,
        log_level=LogLevels.info,
        log_dictconfig=logging,
        ssl_cert=Path(cert_file) if cert_file else None,
        ssl_key=Path(key_file) if key_file else None,
        ssl_protocol_min=SSLProtocols.tls12,
        respawn_failed_workers=True,
        workers_kill_timeout=settings.graceful_timeout,
    )
    try:
        server.serve()
    finally:
        settings.on_exit(None)
