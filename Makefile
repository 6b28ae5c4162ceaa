# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config.example.yaml
DATA   ?= data

.PHONY: run demo test setup setup-test system-deps lint typecheck pytest bench clean docs

run: setup
	$(BIN)/ampgate --config $(CONFIG) --data-dir $(DATA) run

demo: setup
	$(BIN)/ampgate demo

test: setup-test system-deps lint typecheck pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the dependency list or the lock file changed.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

system-deps:
	@scripts/system-deps.sh

lint:
	$(BIN)/ruff check gateway plugins demo tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q -p no:cacheprovider

docs: setup
	$(BIN)/python -m gateway.docs

bench: setup-test
	$(BIN)/python bench/bus.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
