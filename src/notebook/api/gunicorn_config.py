"""Gunicorn settings: workers, threads, timeouts, graceful shutdown, the metrics directory, and
gunicorn's own log lines in the application's JSON format, on stderr.

`notebook-server` passes them with `--config python:notebook.api.gunicorn_config`; a bare
`gunicorn` started in the repository root reads them through its `gunicorn.conf.py`. Options
given on the command line (`-w 4`) win over these.

Loading them checks the application's configuration first: an unsafe production setup stops
gunicorn with a one-line reason before it logs, binds or boots a worker (a worker failing in
`create_app()` would print a traceback and leave gunicorn to report "Worker failed to boot").
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from config.settings import ConfigError, load_config, process_environment

_METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def refuse_unusable_configuration() -> None:
    """Exit with status 2 and one line on stderr when the environment's Config must not be used."""
    from notebook.utils.key_store import KeyStoreError, open_key_ring

    try:
        config = load_config()
        config.validate()
        if config.encryption_enabled and config.env == "production":  # elsewhere made on first use
            open_key_ring(Path(config.encryption_key_path), Path(config.key_store_path), create=False)
    except (ConfigError, KeyStoreError) as exc:
        print(f"notebook: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


refuse_unusable_configuration()

# Each request mostly waits for CouchDB, so a few threads per worker serve more than more
# workers would; every worker also runs the health monitor, the conflict resolver and the
# replication supervisor, which is another reason to keep workers few. `-w`/`--threads` win.
workers = 2
worker_class = "gthread"
threads = 4
# a worker silent this long is killed and replaced (a request's CouchDB retries end sooner:
# COUCHDB_TIMEOUT_SECONDS x 1.5)
timeout = 30
# SIGTERM: stop accepting, let requests in flight finish for up to this long, then exit
graceful_timeout = 20
# behind haproxy, which reuses connections; longer than haproxy's `timeout http-keep-alive`
keepalive = 5
max_requests = 0  # workers are not recycled: their health monitors and caches are worth keeping

_created_metrics_dir: str | None = None


def ssl_context(conf: Any, default_ssl_context_factory: Any) -> Any:
    """With --certfile/--keyfile (TLS_CERT_FILE/TLS_KEY_FILE through notebook-server): TLS 1.2
    or newer only, like haproxy's `ssl-min-ver TLSv1.2`."""
    import ssl

    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def on_starting(server: Any) -> None:
    """Give the workers an empty prometheus-client multiprocess directory (counters of an
    earlier run would otherwise be added to this one's): PROMETHEUS_MULTIPROC_DIR emptied when
    set, else a fresh temporary directory that is removed again at exit."""
    global _created_metrics_dir
    given = process_environment().get(_METRICS_DIR_VARIABLE, "")  # the environment, else .env
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.db"):
            leftover.unlink()
        # prometheus-client in the workers reads the process environment, not .env
        os.environ[_METRICS_DIR_VARIABLE] = given
    else:
        _created_metrics_dir = tempfile.mkdtemp(prefix="notebook-metrics-")
        os.environ[_METRICS_DIR_VARIABLE] = _created_metrics_dir  # inherited by every worker
    # Imported here, once the directory is set (prometheus-client picks its value class at
    # import), and not in child_exit: that runs in a SIGCHLD handler, which can interrupt
    # this very import during shutdown and fail it as a circular import (gunicorn exits 1).
    global _multiprocess
    from prometheus_client import multiprocess

    _multiprocess = multiprocess


_multiprocess: Any = None


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended: its live gauges must not be reported any more (its counters stay)."""
    if _multiprocess is not None:
        _multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)


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
