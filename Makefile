# The two commands the README promises: `make demo` and `make test`. Each sets itself up from nothing but
# Python 3.11 + pip (a .venv in the repo root, filled by uv from PyPI). `make test` also needs root (it starts
# Docker and builds the sandbox image, see `sandbox`); `make demo` needs no Docker.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: demo test setup local sandbox clean
setup: $(VENV)/.installed
local: $(VENV)/.installed-local

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.4"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[dev]"
	touch $@

# Local GGUF models (osca[local]): llama-cpp-python is an sdist that compiles for ~5-10 min on 2 cores. Its
# wheel is built once per machine into $(WHEELS) and found there afterwards (uv's own cache rebuilds it
# whenever PyPI's cache headers expire). Only the tests and the local-model examples need it, not the demo.
WHEELS ?= $(HOME)/.cache/osca/wheels
LLAMA := llama-cpp-python==0.3.36
$(VENV)/.installed-local: $(VENV)/.installed
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEELS) "$(LLAMA)"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt --find-links $(WHEELS) -e ".[dev,local,ray]"
	touch $@

demo: setup
	$(BIN)/osca curve $(DATA)/osca/swebench_agentless.json --budgets 1-16 --default gpt4o_0.8 --split given --plot swebench_curve.png
	$(BIN)/osca curve $(DATA)/osca/swebench_agentless.json --budgets 1-16 --default gpt4o_0.8 --split 0.3 --repeats 5 --plot swebench_curve_split.png

# The sandbox tests need a Docker engine and the sandbox image: start/install the engine (root; a no-op when
# Docker answers), then build the image offline (a no-op when this recipe's image is already there).
sandbox: setup
	bash sandboxes/ensure-docker.sh
	$(BIN)/osca sandbox build

test: setup local sandbox
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
