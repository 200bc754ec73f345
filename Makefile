# Rebound: `make run` serves on http://127.0.0.1:8000, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: run test lint format openapi bench worker clean

$(STAMP): pyproject.toml uv.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet --compile-bytecode
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rebound serve

worker: $(STAMP)
	$(VENV)/bin/rebound worker

test: $(STAMP)
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check api tests bench
	$(VENV)/bin/ruff format --check api tests bench
	$(VENV)/bin/mypy api

format: $(STAMP)
	$(VENV)/bin/ruff check --fix api tests bench
	$(VENV)/bin/ruff format api tests bench

openapi: $(STAMP)
	$(VENV)/bin/rebound openapi

bench: $(STAMP)
	$(VENV)/bin/python -m bench.run

clean:
	rm -rf $(VENV) var
