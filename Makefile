# The two set-up commands of the README. Each creates the environment (.venv)
# and installs what it needs, so both work on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint install clean

$(BIN)/.gate-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull gigabytes of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.gate-installed

## make demo: train the demo candidate (cached in .gate-cache), run the gate, write gate-out/.
## An honest FAIL verdict (exit 1) is a successful demo; bad input (2) or error (3) fail make.
demo: install
	$(BIN)/gate demo --cache .gate-cache --out gate-out || [ $$? -eq 1 ]

## make test: the whole test suite (real model, local reference libraries).
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/hadolint Dockerfile

clean:
	rm -rf $(VENV) gate-out .gate-cache .pytest_cache *.egg-info
