# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
DEMO_COUNT ?= 200
DEMO_DATA := examples/faces/data

.PHONY: demo test install-demo install-test lint bench clean experiment solar url-captions video-pose diabetes bench-serve

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

SOLAR_DATA := examples/solar/data

# 12 simulated PV sites x 2 years, each analysed by an unchanged per-file script (solar-data-tools).
# One file is deliberately broken: the run's exit code is 1 on purpose; the target itself succeeds.
solar: install-demo
	$(BIN)/python examples/solar/make_data.py --out $(SOLAR_DATA)
	$(BIN)/shoal run examples/solar/analyse.py:main --input $(SOLAR_DATA)/power || test $$? -eq 1
	@echo "Draw the results against the truth: $(BIN)/python examples/solar/plot.py RUN_FOLDER"

CAPTIONS := examples/url-captions
COUNT ?= 10000
PORT ?= 8765

# Caption COUNT image URLs (10,000 by default; COUNT=500 for a quick look) served on 127.0.0.1:PORT,
# then search the captions. Each call is a new job: call it twice, and the second takes every
# picture's detections, text and embedding from the content cache (see its report).
url-captions: install-demo
	$(BIN)/python $(CAPTIONS)/make_data.py --count $(COUNT) --port $(PORT)
	@out=$(CAPTIONS)/data/runs/$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/python $(CAPTIONS)/serve.py --port $(PORT) & server=$$!; trap 'kill $$server' EXIT; sleep 1; \
	{ $(BIN)/shoal run $(CAPTIONS) --out $$out --new || test $$? -eq 1; } && \
	$(BIN)/python $(CAPTIONS)/search.py $$out "a stop sign" "people walking in the street" "a cat" -k 3

# Detection and pose on Debian's sample videos (apt-get install opencv-doc): each video split into
# segments of 100 frames that run on 2 workers, then joined (see examples/video-pose/README.md).
video-pose: install-demo
	$(BIN)/python examples/video-pose/make_data.py
	$(BIN)/shoal run examples/video-pose --workers 2

DIABETES_PORT ?= 8781

# Train the diabetes MLP (ONNX), serve it, and measure its accuracy on Pima.te through the API.
diabetes: install-test
	$(BIN)/python examples/diabetes/train.py
	$(BIN)/shoal serve --project examples/diabetes --port $(DIABETES_PORT) & pid=$$!; trap "kill $$pid" EXIT; \
	for i in $$(seq 180); do \
	  curl -sf localhost:$(DIABETES_PORT)/api/v1/pipelines/diabetes/serving | grep -q '"ready":1' && break; sleep 1; \
	done; \
	$(BIN)/python examples/diabetes/evaluate.py --server http://127.0.0.1:$(DIABETES_PORT)

# Online serving under open-loop load (about 25 min; installs BentoML into bench/out/serve once).
bench-serve: install-test
	$(BIN)/python bench/serve.py

lint: install-test
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

# Installs (as root) and starts what the tests need first: Redis, RabbitMQ, PostgreSQL, Prometheus,
# Chromium. Tests whose service cannot be had (no root to install it) skip, saying how to fix it.
# Two pytest processes (pytest-xdist): much of the suite waits on real services, builds and
# hosts, so the second keeps the cores busy. TEST_PROCESSES=0 runs everything in one process.
TEST_PROCESSES ?= 2

test: install-test lint
	./scripts/test-services
	$(BIN)/python -m pytest -n $(TEST_PROCESSES)

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
	rm -rf $(VENV) shoal-runs $(DEMO_DATA) .pytest_cache .mypy_cache .ruff_cache examples/stream-experiment/data $(SOLAR_DATA) examples/video-pose/data $(CAPTIONS)/data
