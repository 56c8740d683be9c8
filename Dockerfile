# cqrs-sso proxy as a container image.
#
#   docker build -t cqrs-sso .            (or: podman build -t cqrs-sso .)
#   docker run --read-only --tmpfs /tmp -p 8080:8080 --env-file cqrs-sso.env cqrs-sso
#
# Two stages: the first has pip and builds the virtual environment; the final image has
# only the Python runtime and that environment (no compilers, no pip caches), runs as an
# unprivileged user, and writes nothing outside /tmp, so it runs with a read-only root
# file system. Configuration comes from CQRS_SSO_* variables, or from a file mounted at
# /etc/cqrs-sso/cqrs-sso.toml (CQRS_SSO_CONFIG_FILE); secrets from files with *_FILE.
# docs/deploy.md has the whole story.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml setup.cfg README.md LICENSE /src/
COPY requirements/constraints.txt /src/requirements/constraints.txt
COPY cqrs_sso_middleware /src/cqrs_sso_middleware
# install: one virtual environment with the proxy extra (uvicorn, Redis, metrics), at the
# versions the test suite ran with (the repository's lock, as pip constraints)
RUN python -m venv /opt/cqrs-sso && PIP_CONSTRAINT=/src/requirements/constraints.txt /opt/cqrs-sso/bin/pip install "/src[proxy]"

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/cqrs-sso /opt/cqrs-sso
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cqrs-sso
USER 10001
ENV PATH=/opt/cqrs-sso/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CQRS_SSO_LISTEN=0.0.0.0:8080 \
    CQRS_SSO_METRICS_LISTEN=0.0.0.0:9090 \
    CQRS_SSO_METRICS_ALLOW=127.0.0.1/32,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16
# 8080: the service (behind the front proxy); 9090: /metrics alone, for the scraper on the
# private network; never route the front proxy to it. On 8080, /metrics is 404.
EXPOSE 8080 9090
# healthcheck: the process answers (not the provider: that is /readyz, for the orchestrator)
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CQRS_SSO_LISTEN', ':8080').rpartition(':')[2] + '/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
# entrypoint: cqrs-sso; the command: proxy (settings from the environment or the mounted
# file); `docker run IMAGE check-config` runs another command in the same image
ENTRYPOINT ["cqrs-sso"]
CMD ["proxy"]
