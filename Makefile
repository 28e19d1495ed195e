# The two commands the README promises: `make demo` and `make test`. Each sets itself up from nothing but
# Python 3.11 + pip (a .venv in the repo root, filled by uv from PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: demo test setup clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.4"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/osca curve $(DATA)/osca/swebench_agentless.json --budgets 1-16 --default gpt4o_0.8 --split given --plot swebench_curve.png
	$(BIN)/osca curve $(DATA)/osca/swebench_agentless.json --budgets 1-16 --default gpt4o_0.8 --split 0.3 --repeats 5 --plot swebench_curve_split.png

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
