# Conduit: `make demo` and `make test` work from a clean clone with Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONDUIT := $(VENV)/bin/conduit
DEMO_DIR ?= demo
SF ?= 1

.PHONY: demo test lint bench venv dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)
	$(PIP) install -q -e .

dev: $(PY)
	$(PIP) install -q -e ".[dev]"

demo: venv
	rm -rf $(DEMO_DIR)
	$(CONDUIT) init $(DEMO_DIR)
	$(CONDUIT) run $(DEMO_DIR)/ingest.yml --no-progress || test $$? -eq 0
	$(CONDUIT) query --config $(DEMO_DIR)/ingest.yml "SELECT resource, status, rows_read, rows_written, rows_dlq, round(rows_per_s) AS rows_per_s, table_name FROM resource_runs ORDER BY started_at"
	$(CONDUIT) query --config $(DEMO_DIR)/ingest.yml "SELECT _conduit_resource, _conduit_row_number, _conduit_check, _conduit_error FROM dlq"

test: dev
	bash tests/stand_ins/setup_bqemulator.sh $(CURDIR)/.venv-bqemu
	$(PY) tests/services.py check
	$(PY) -m pytest -q

lint: dev
	$(VENV)/bin/ruff check conduit tests benchmarks
	$(VENV)/bin/ruff format --check conduit tests benchmarks
	$(VENV)/bin/mypy conduit

bench: dev
	$(PY) -m benchmarks.run --sf $(SF)

clean:
	rm -rf $(VENV) .venv-bqemu $(DEMO_DIR) .pytest_cache benchmarks/data
