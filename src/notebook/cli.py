"""`notebook-server`: serve the API (gunicorn in production, a threaded dev server otherwise).

FLASK_ENV unset means production. An unusable configuration stops it with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from config.settings import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notebook-server", description=__doc__)
    parser.add_argument("--host", help="interface to bind (default FLASK_HOST)")
    parser.add_argument("--port", type=int, help="port to bind (default FLASK_PORT)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers in production")
    args = parser.parse_args(argv)
    try:
        config = load_config()
        config.validate()
    except ConfigError as exc:
        print(f"notebook-server: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.host
    port = args.port or config.port
    if config.env == "production":
        from gunicorn.app.wsgiapp import run

        sys.argv = [
            "gunicorn",
            "--config",
            "python:notebook.api.gunicorn_config",
            "--workers",
            str(args.workers),
            "--threads",
            "4",
            "--bind",
            f"{host}:{port}",
            "notebook.api.app:create_app()",
        ]
        run()
        return 0
    from notebook.api.app import create_app, run_development_server

    run_development_server(create_app(config), host, port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
