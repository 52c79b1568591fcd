# The two set-up commands of the README:
#   make demo   installs the runtime and scores examples/solution.json with a model available offline
#   make test   installs everything (runtime, converter, training, benchmarks, docs, test tools) and runs the tests
# and the documentation:
#   make docs           builds the site into build/site (offline, warnings as errors; not committed)
#   make docs-examples  re-runs the docs' runnable examples and rewrites the outputs they show (after a new model)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned so pip takes the CPU build instead of a multi-GB CUDA one
TORCH ?= torch==2.13.0

.PHONY: venv install install-dev demo demo-model test lint docs docs-examples clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP) install -q -e ".[convert]"

install-dev: $(PY)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]" "$(TORCH)"

# The package bundles the project's demo R-PRM (rprm_lite/models/rprm-demo.gguf); $RPRM_MODEL overrides it.
demo: install
	$(VENV)/bin/rprm-lite score examples/solution.json

# Retrain the bundled demo model from scratch with the project's recipe (about an hour on 2 CPU cores),
# measure it on the synthetic test split, and put it into the package.
RECIPE_OUT ?= build/recipe
demo-model: install-dev
	$(PY) -m rprm_lite.demo_model.recipe --out $(RECIPE_OUT) --evaluate
	cp $(RECIPE_OUT)/rprm-demo.gguf rprm_lite/models/rprm-demo.gguf

test: install-dev
	$(PY) -m pytest

# The site's reference pages are generated while it builds (the CLI from the typer app, the HTTP API from a
# real `rprm-lite serve`'s OpenAPI schema, the Python API from the docstrings); nothing is fetched from the web.
docs: install-dev
	$(VENV)/bin/mkdocs build --strict

docs-examples: install-dev
	$(PY) docs/_tools/doc_examples.py --update

lint:
	$(VENV)/bin/ruff check .

clean:
	rm -rf build .pytest_cache
