# gate as a Docker container action: a slim, locked image.
#
# - The dependencies come from requirements.lock only (hashes required, no resolver), CPU-only torch
#   included; the build fails if a CUDA package (nvidia-*, triton) lands in the image.
# - They are installed in a layer of their own, before any source is copied: a change to gate's code
#   rebuilds one small layer, not 1.5 GB.
# - Only the package and the entry point ship: no tests, docs, examples or .git.
# - The base image is pinned by digest. scripts/image_test.sh builds on a stand-in (BASE=...), since the
#   registry is unreachable where it runs.
#
# The released action does not build this file: it runs the image the release workflow pushed, by tag
# and digest (docs/release.md). For development, action.yml can point at `Dockerfile` again.
ARG BASE=python:3.11.7-slim-bookworm@sha256:d11b9bd5e49ea7401753d78f4d3b56f3aec952b85b49bcae88981f0452818e0b

FROM ${BASE} AS deps
# Where pip finds torch==2.13.0+cpu; PIP_FIND_LINKS may name a folder mounted at build time instead.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY requirements.lock /tmp/requirements.lock
# A CA certificate for pip, when the build machine needs one, comes as a build secret: never in a layer.
RUN --mount=type=secret,id=pipcert \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
    && python -m venv /opt/gate/venv \
    && /opt/gate/venv/bin/pip install --quiet --require-hashes --no-deps -r /tmp/requirements.lock \
        ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} ${PIP_FIND_LINKS:+--find-links "$PIP_FIND_LINKS"} \
    && /opt/gate/venv/bin/pip check \
    && cuda="$(/opt/gate/venv/bin/pip list 2>/dev/null | grep -iE '^(nvidia-|triton|cuda)' || true)" \
    && if [ -n "$cuda" ]; then echo "a CUDA package is in the CPU image: $cuda" >&2; exit 1; fi \
    && find /opt/gate/venv -name __pycache__ -prune -exec rm -rf {} + \
    && rm /tmp/requirements.lock

FROM ${BASE}
# git: the Action reads the base branch's thresholds (and suite) from the checkout
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/gate/venv /opt/gate/venv
COPY entrypoint.py /opt/gate/entrypoint.py
COPY gate /opt/gate/gate
ENV PATH=/opt/gate/venv/bin:$PATH \
    PYTHONPATH=/opt/gate \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRANSFORMERS_NO_ADVISORY_WARNINGS=1
RUN python -m compileall -q /opt/gate/gate \
    && python -c "import gate.cli, gate.action; print('gate', gate.__version__)"
ENTRYPOINT ["/opt/gate/venv/bin/python", "/opt/gate/entrypoint.py"]
