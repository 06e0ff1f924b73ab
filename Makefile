# formerflow: `make run` then `make test` is all a fresh machine needs.
SHELL := /bin/bash
PY    := .venv/bin/python
ROOT  := $(CURDIR)

# Quiet, offline, fast runs: no telemetry or update checks from Prefect, MLflow or DVC.
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PREFECT_HOME ?= $(ROOT)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_LOGGING_LEVEL ?= WARNING
export MLFLOW_TRACKING_URI ?= sqlite:///$(ROOT)/mlflow.db
export TMPDIR := $(ROOT)/.tmp
export FORMERFLOW_ROOT := $(ROOT)
export PATH := $(ROOT)/.venv/bin:$(PATH)
# The install skips byte-compiling (--no-compile, below), so Python must be allowed to write the .pyc
# of each module it imports, once; with PYTHONDONTWRITEBYTECODE set every process (each DVC stage, each
# CLI test) would recompile torch, mlflow and prefect from source (~15 s per process).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test bench serve lint ui repro clean help

help:
	@echo "make run    - create .venv if missing, install, run the whole pipeline on the defaults"
	@echo "make test   - create .venv if missing, install, run the test suite"
	@echo "make bench  - benchmarks (tables on stdout, JSON in bench/results/; installs the bench extra)"
	@echo "make serve  - serve the Prefect deployments with their cron schedules"
	@echo "make lint   - ruff"
	@echo "make ui     - MLflow UI on http://127.0.0.1:5000"
	@echo "make repro  - dvc repro (the same stages through DVC)"
	@echo "make mlflow-server - MLflow tracking server on PostgreSQL with served artifacts (Ctrl-C stops it)"

.venv/.installed: pyproject.toml tools/install.py
	@mkdir -p $(TMPDIR)
	@test -x $(PY) || python3 -m venv .venv
	@# uv with pip's own settings (about 15 s; pip about 2 min), pip where uv fails: tools/install.py. Neither
	@# byte-compiles; Python compiles the modules actually imported on first use.
	$(PY) tools/install.py '.[dev]'
	@touch $@

.dvc/config.local:
	@# Local DVC settings that must not be committed: no analytics, no update checks (written directly:
	@# what `dvc config --local core.analytics false` writes, without two DVC start-ups).
	@printf '[core]\n    analytics = false\n    check_update = false\n' > $@

setup: .venv/.installed .dvc/config.local
	@mkdir -p $(TMPDIR) $(PREFECT_HOME)

.PHONY: setup
run: setup
	.venv/bin/formerflow run

# The scale-out extra (Dask, Optuna, PostgreSQL driver, S3: pyproject's `scale`): the tests start those engines.
.venv/.scale-installed: .venv/.installed pyproject.toml
	$(PY) tools/install.py '.[dev,scale]'
	@touch $@

test: setup .venv/.scale-installed
	$(PY) -m pytest -q -n 2 --dist worksteal

# The benchmarks' own dependencies (pyproject's `bench` extra: Intel Neural Compressor), installed here only.
.venv/.bench-installed: .venv/.installed pyproject.toml
	$(PY) tools/install.py '.[dev,bench]'
	@touch $@

bench: setup .venv/.bench-installed
	$(PY) bench/netflow_ingest.py
	$(PY) bench/pipeline_overhead.py
	$(PY) bench/eeg_train.py
	$(PY) bench/finance_infer.py
	$(PY) bench/turbulence.py
	$(PY) bench/compression.py
	$(PY) bench/external_inc.py

serve: setup
	.venv/bin/formerflow serve

lint: setup
	.venv/bin/ruff check .

ui: setup
	.venv/bin/formerflow ui  # relocates a copied project's store to its own artifacts first

repro: setup
	.venv/bin/dvc repro

clean:
	rm -rf data/raw data/processed artifacts reports checkpoints mlflow.db mlartifacts .prefect/results .tmp

.PHONY: mlflow-server mlflow-server-stop

# MLflow on PostgreSQL with served artifacts (docs/operations.md, "Scale out"): a local cluster in .mlflow-server/ the first
# time; MLFLOW_ARTIFACTS=s3://bucket/prefix (AWS_* credentials in the environment) stores artifacts in a bucket.
MLFLOW_PORT ?= 5000
mlflow-server: setup .venv/.scale-installed
	$(PY) tools/mlflow_server.py start --foreground --port $(MLFLOW_PORT) $(if $(MLFLOW_ARTIFACTS),--artifacts $(MLFLOW_ARTIFACTS))

mlflow-server-stop: setup
	$(PY) tools/mlflow_server.py stop
