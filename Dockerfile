# One image for `shoal serve`, `shoal worker` and one-off `shoal run`: the entrypoint is `shoal`.
#
#   docker build -t shoal .
#   docker run --rm -v "$PWD/examples/faces:/project:ro" -v shoal-data:/var/lib/shoal shoal run /project --input /project/data
#
# BASE is any Debian-like image whose `python3` (3.11 or newer) has the venv module: the official
# Python image by default; the tests build on a base made locally (no registry there).
# Projects come in by a read-only mount at /project, or by a derived image (`FROM shoal`, then
# `COPY myproject /project`; see README.md, "Containers").
ARG BASE=python:3.12-slim-bookworm

FROM ${BASE} AS build
#: the extras installed: the server, Celery workers, PostgreSQL, the faces example's OpenCV, metrics export
ARG EXTRAS=web,celery,postgres,faces,metrics
ARG VERSION=0.1.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone (an empty package stands in for the code), so a
# change to the code rebuilds only the layers after this one.
COPY pyproject.toml ./
RUN mkdir -p src/shoal \
    && touch README.md src/shoal/__init__.py \
    && python3 -m venv /opt/shoal \
    && /opt/shoal/bin/pip install ".[${EXTRAS}]" dumb-init==1.2.5.post1 \
    && /opt/shoal/bin/pip uninstall --yes shoal
COPY README.md ./
COPY src ./src
# The wheel, built here and installed without its dependencies (they are in place); the label's
# VERSION must be the one the wheel says, or the build stops.
RUN /opt/shoal/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/shoal/bin/pip install --no-deps /tmp/wheels/shoal-*.whl \
    && test "$(/opt/shoal/bin/shoal --version)" = "shoal ${VERSION}"

FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Run data and machine-learning pipelines over many items: server, workers, one-off runs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 shoal \
    && useradd --system --uid 10001 --gid shoal --home-dir /var/lib/shoal --shell /usr/sbin/nologin shoal \
    && install -d -o shoal -g shoal -m 0755 /var/lib/shoal \
    && install -d -m 0755 /project
COPY --from=build /opt/shoal /opt/shoal
# SHOAL_HOME holds the SQLite ledger (when no SHOAL_DB_URL), uploads and run folders: mount a volume.
ENV PATH=/opt/shoal/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SHOAL_HOME=/var/lib/shoal
WORKDIR /var/lib/shoal
USER 10001:10001
EXPOSE 8000
# The server's /healthz (up, and its ledger reachable). A worker has no HTTP endpoint of its own:
# start it with --metrics-port and point SHOAL_HEALTHCHECK_URL at that (compose.yaml does); give
# one-off runs --no-healthcheck.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen(os.environ.get('SHOAL_HEALTHCHECK_URL') or 'http://127.0.0.1:8000/healthz', timeout=4)"]
# dumb-init as PID 1: SIGTERM reaches shoal (which stops cleanly on it) and orphans are reaped.
ENTRYPOINT ["dumb-init", "--single-child", "--", "shoal"]
CMD ["--help"]
