"""Read by gunicorn when it is started in the repository root; see notebook/api/gunicorn_config.py."""

from notebook.api.gunicorn_config import logconfig_dict  # noqa: F401
