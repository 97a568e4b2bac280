# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
DEMO_COUNT ?= 200
DEMO_DATA := examples/faces/data

.PHONY: demo test install-demo install-test lint bench clean experiment

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[faces]'
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[faces,web,metrics,test]'
	touch $@

install-demo: $(VENV)/.demo
install-test: $(VENV)/.test

# Generate 200 images (a few deliberately broken) and detect faces in them on this machine.
# Broken files fail the run's exit code (1) on purpose; the demo itself succeeds.
demo: install-demo
	$(BIN)/python examples/faces/make_data.py --count $(DEMO_COUNT) --out $(DEMO_DATA)
	$(BIN)/shoal run examples/faces --input $(DEMO_DATA) || test $$? -eq 1
	@echo
	@echo "The report is in the run folder printed above: performance.txt, runtime.png, throughput.png,"
	@echo "results.jsonl/.csv, errors.csv and artifacts/<item>/annotated.jpg. List runs with: $(BIN)/shoal jobs"

lint: install-test
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

# Installs (as root) and starts what the tests need first: Redis, RabbitMQ, PostgreSQL, Prometheus,
# Chromium. Tests whose service cannot be had (no root to install it) skip, saying how to fix it.
test: install-test lint
	./scripts/test-services
	$(BIN)/python -m pytest

# A load experiment on a streaming job (examples/stream-experiment/README.md), about 4 minutes.
# Needs Redis and Debian's prometheus (+ prometheus-node-exporter), which test-services installs and starts.
experiment: install-test
	-./scripts/test-services
	$(BIN)/python examples/stream-experiment/run_experiment.py

bench: install-test
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/celery.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/bundles.py

clean:
	rm -rf $(VENV) shoal-runs $(DEMO_DATA) .pytest_cache .mypy_cache .ruff_cache examples/stream-experiment/data
