"""Read by gunicorn when it is started in the repository root; see notebook/api/gunicorn_config.py."""

from notebook.api.gunicorn_config import (  # noqa: F401
    child_exit,
    graceful_timeout,
    keepalive,
    logconfig_dict,
    max_requests,
    on_exit,
    on_starting,
    ssl_context,
    threads,
    timeout,
    worker_class,
    workers,
)
