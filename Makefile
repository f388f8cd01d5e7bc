# Two entry points (see README.md): `make run` and `make test`. Both create the
# virtual environment on first use from what the repository itself declares.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fleetd run

test: $(STAMP)
	$(BIN)/ruff check fleetd tests bench plugins
	$(BIN)/ruff format --check fleetd tests bench plugins
	$(BIN)/mypy
	$(BIN)/pytest --durations=10

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
