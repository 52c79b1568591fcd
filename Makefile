# The two set-up commands of the README:
#   make demo   installs the runtime and scores examples/solution.json with a model available offline
#   make test   installs everything (runtime, converter, training, benchmarks, test tools) and runs the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned so pip takes the CPU build instead of a multi-GB CUDA one
TORCH ?= torch==2.13.0
DEMO_MODEL ?= build/random-demo.gguf

.PHONY: venv install install-dev demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP) install -q -e ".[convert]"

install-dev: $(PY)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]" "$(TORCH)"

# Until a trained demo model is bundled, the demo builds a tiny random-weight model locally
# (no download); its output is labelled "random weights: for tests and demos only".
demo: install
	@if [ -n "$$RPRM_MODEL" ] || [ -f rprm_lite/models/rprm-demo.gguf ]; then \
		$(VENV)/bin/rprm-lite score examples/solution.json; \
	else \
		mkdir -p build && $(PY) -m rprm_lite.convert.random_model $(DEMO_MODEL) --tokenizer small-bpe --force && \
		$(VENV)/bin/rprm-lite score examples/solution.json --model $(DEMO_MODEL); \
	fi

test: install-dev
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check .

clean:
	rm -rf build .pytest_cache
