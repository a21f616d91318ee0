# One toolchain, the same locally and in CI (.ci/run calls these targets verbatim).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup lint test test-all demo proto bench docs clean

setup: ## create .venv and install the project with its dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'

lint: ## ruff + mypy
	$(BIN)/ruff check src tests bench scripts examples
	$(BIN)/mypy

test: ## the default test run (slow end-to-end tests excluded)
	$(BIN)/pytest -q

test-all: ## every test, slow ones included
	$(BIN)/pytest -q -m ''

demo: ## run the demo: tests driving a QEMU virtual board (builds the guest on first use)
	examples/qemu/run-demo.sh

proto: ## regenerate src/jumpstarter/protocol from proto/
	$(BIN)/python scripts/gen_proto.py

bench: ## run the benchmarks (results in bench/out/latest.json; summarise in bench/RESULTS.md)
	$(BIN)/python bench/run.py

docs: ## write docs/reference/cli.md (CI: check it is current), build the site into site/ (warnings are errors)
	$(BIN)/python scripts/gen_cli_docs.py $(if $(CI),--check,)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache
