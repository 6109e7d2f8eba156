# The two commands of the README: `make demo` runs the system, `make test` runs the tests.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install

$(BIN)/recsys: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/recsys

demo: $(BIN)/recsys
	$(BIN)/recsys demo

test: $(BIN)/recsys
	$(BIN)/pytest
