# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first and
# are quick the second time (the stamp file changes only when pyproject.toml or constraints.txt do).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, alone: the CPU wheel this machine has, never the CUDA one.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(STAMP)

# `make demo` analyses a generated patient; `make demo FILE=path/to/recording.wav` analyses yours.
demo: setup
ifdef FILE
	$(BIN)/murmurscope analyze "$(FILE)" --plot --plot-dir $(DEMO_DIR)
else
	test -d $(DEMO_DIR)/patient || $(BIN)/murmurscope synth $(DEMO_DIR)/patient --patients 1 --seed 7 --no-labels
	$(BIN)/murmurscope analyze $(DEMO_DIR)/patient --plot --plot-dir $(DEMO_DIR)
endif

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not integration and not browser"

clean:
	rm -rf build
