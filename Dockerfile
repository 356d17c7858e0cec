# One image for every Corridor process (engine, executors, projector, HTTP API, CLI).
# Built from the hashed runtime lock only; validated by tests/unit/test_deploy_*.py (hadolint,
# and an install of the same wheel from the same lock as a non-root user). ADR 0180.
#
# The base is pinned to an exact tag, the interpreter the lock and the tests use; resolve it to
# a digest (`docker buildx imagetools inspect python:3.11.7-slim-bookworm`) when you build a
# release, and pin `FROM python:3.11.7-slim-bookworm@sha256:...` in your fork (ADR 0180).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/runtime.lock requirements/dev.lock requirements/
# The build backend (setuptools, wheel) from the dev lock, with its hashes: nkeys ships only an
# sdist, and pip's isolated build would fetch an unpinned setuptools to build it (and our own
# wheel). It builds them here, without isolation, and leaves before the final stage.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN awk '/^(setuptools|wheel)==/ {keep = 1} keep && /^ +#/ {keep = 0} keep' \
        requirements/dev.lock > requirements/build.lock \
    && python -m venv /opt/corridor \
    && /opt/corridor/bin/pip install --require-hashes --no-deps -r requirements/build.lock
# The locked set (its own layer: it changes less often than the code), hashes required, no
# resolution: exactly what the lock says, or the build fails.
RUN /opt/corridor/bin/pip install --require-hashes --no-deps --no-build-isolation \
        -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY services services
COPY schemas schemas
COPY projections projections
# The project's own wheel, installed with --no-deps: every dependency is already there. Then the
# build backend goes, and `pip check` proves the set complete without it.
RUN /opt/corridor/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/corridor/bin/pip install --no-deps /wheels/corridor-*.whl \
    && /opt/corridor/bin/pip uninstall --yes setuptools wheel \
    && /opt/corridor/bin/pip check

FROM ${PYTHON_IMAGE}
# A fixed UID/GID, so volume ownership, runAsUser and file modes agree everywhere (ADR 0180).
ARG CORRIDOR_UID=10001
RUN groupadd --system --gid ${CORRIDOR_UID} corridor \
    && useradd --system --uid ${CORRIDOR_UID} --gid corridor --home-dir /var/lib/corridor \
       --create-home --shell /usr/sbin/nologin corridor
COPY --from=builder /opt/corridor /opt/corridor
ENV PATH=/opt/corridor/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CORRIDOR_STATE_DIR=/var/lib/corridor \
    CORRIDOR_METRICS_HOST=0.0.0.0 \
    CORRIDOR_METRICS_PORT=9100
USER 10001:10001
WORKDIR /var/lib/corridor
# /metrics, /healthz and /readyz of the engine and executors (ADR 0153); `corridor http` serves
# its own /healthz and /readyz on its API port, so its service overrides this check.
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CORRIDOR_METRICS_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["corridor"]
CMD ["--help"]
