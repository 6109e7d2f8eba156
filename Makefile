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
	# the scoring loops compile once here (cached beside them), not in the first list scored
	$(BIN)/python -c "from shared.scoring import kernels; kernels.warm()"
	touch $@

install: $(BIN)/recsys

demo: $(BIN)/recsys
	$(BIN)/recsys demo

# The lint, the layer contract (pyproject.toml [tool.importlinter]) and the type check of
# shared/ come first: each takes seconds, and a failure stops before the suite's minutes.
test: $(BIN)/recsys
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest
