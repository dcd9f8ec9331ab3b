# syntax=docker/dockerfile:1
# labelbridge: Label Studio ML backend (Labelbox predictions) + webhook receiver (annotations to
# Labelbox). Build: docker build -t labelbridge .   Run: see docker-compose.yml.

# ---------------------------------------------------------------- build: a virtualenv in /opt/venv
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A C compiler for the converters' mypyc modules (setup.py); the runtime stage has none.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (their ranges are pinned in pyproject.toml), so that editing the code does
# not reinstall them: install the project once with an empty package, then again with the code.
# README.md* : pyproject.toml names it as the long description; copied when present.
COPY pyproject.toml setup.py README.md* ./
RUN mkdir -p backend/labelbridge && touch backend/labelbridge/__init__.py \
 && LABELBRIDGE_COMPILE=0 pip install . \
 && pip uninstall -y labelbridge \
 && rm -rf backend build *.egg-info
COPY backend/ ./backend/
# The build must give compiled converters here (a missing compiler would only warn).
RUN pip install --no-deps . \
 && labelbridge --help >/dev/null \
 && python -c "from labelbridge import compiled; s = compiled.summary(); assert s == 'compiled', s"

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm
ARG APP_UID=10001
ARG APP_GID=10001
# Fixed ids, so a bind-mounted data dir can be chown'ed to match (chown -R 10001:10001 ...).
RUN groupadd --system --gid "${APP_GID}" labelbridge \
 && useradd --system --uid "${APP_UID}" --gid labelbridge --create-home \
            --home-dir /home/labelbridge --shell /usr/sbin/nologin labelbridge \
 && mkdir -p /data \
 && chown labelbridge:labelbridge /data \
 && chmod 0750 /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LABELBRIDGE_DATA_DIR=/data \
    LABELBRIDGE_HOST=0.0.0.0 \
    LABELBRIDGE_PORT=9090
WORKDIR /app
# Label configs, mapping examples and the demo export (docker-compose mounts ./configs over it).
COPY configs/ /app/configs/
USER 10001:10001
# SQLite prediction index, outbox (WAL) and file sink live here: keep it on a volume.
VOLUME ["/data"]
EXPOSE 9090
# `labelbridge healthcheck` calls GET /ready on LABELBRIDGE_PORT with the configured basic
# auth and exits 0 (ready) or 1 (degraded, naming why: outbox unwritable, delivery stuck,
# dead letters growing). The start period covers indexing a large export at start.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["labelbridge", "healthcheck"]
CMD ["labelbridge", "serve"]
