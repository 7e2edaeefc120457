# syntax=docker/dockerfile:1
# The NoteBook API image: gunicorn (src/notebook/api/gunicorn_config.py) as a non-root user.
#   docker build -t notebook-backend .
#   docker run --env-file .env -p 5000:5000 notebook-backend
# docker-compose.yml runs two of these behind haproxy over three CouchDB 3 nodes.

# -- build: the package and its pinned dependencies into a virtualenv ----------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY src ./src
RUN /opt/venv/bin/pip install --no-compile . && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# -- run: the virtualenv only, no compiler, no pip cache, no source tree -------------------------
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 notebook \
    && useradd --system --uid 10001 --gid notebook --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin notebook
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root gunicorn.conf.py ./
# production unless told otherwise; PROMETHEUS_MULTIPROC_DIR is emptied by gunicorn at start
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLASK_ENV=production \
    FLASK_HOST=0.0.0.0 \
    FLASK_PORT=5000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/notebook-metrics
USER notebook
EXPOSE 5000
# liveness: /health answers as soon as a worker runs, so no start period is needed; haproxy
# routes on /ready (database reachable, indexes built)
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["notebook-server", "--workers", "2"]
