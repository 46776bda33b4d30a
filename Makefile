# Stepstream: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# AWS SAM CLI lives in its own environment: its pins must not move the project's.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed

.PHONY: demo dev test lint build clean chromium bench bench-profile bench-probe soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# Debian's Chromium for tests/browser (Playwright drives it; it never downloads a browser).
CHROMIUM := /usr/bin/chromium

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli
	touch $(SAM_STAMP)

## demo: start the local stack, run service_health_pipeline on the queue, stream it live
demo: $(STAMP)
	$(BIN)/stepstream demo

## dev: start the local stack and keep it running (API on :8000)
dev: $(STAMP)
	$(BIN)/stepstream dev

## chromium: install Debian's Chromium for the browser tests when it is missing (needs root)
chromium: $(CHROMIUM)

$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

## test: the whole suite: unit, integration, browser (uses the Redis on 127.0.0.1:6379 if one answers)
# --dist loadfile keeps each file on one worker: tests/integration/test_cases.py binds the
# cases' fixed port 8765. (loadgroup would be finer, but on pytest 9.2 it silently stops
# grouping: pytest-dev/pytest-xdist#1386.)
test: $(STAMP) $(SAM_STAMP) $(CHROMIUM)
	$(BIN)/python tests/redis_url.py > $(VENV)/redis_url
	REDIS_URL="$$(cat $(VENV)/redis_url)" $(BIN)/python -m pytest -n 2 --dist loadfile

## bench: every figure of the benchmark suite, with the targets (JSON in bench/results/)
# Uses $REDIS_URL, else the Redis on 127.0.0.1:6379, else an embedded fakeredis. Not a test:
# nothing fails on a figure. About three to four minutes on 2 cores.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --json bench/results/latest.json

## bench-profile: pyinstrument profiles of queued and sync runs, and of the runner
bench-profile: $(BENCH_STAMP)
	$(BIN)/python -m bench --profile bench/results/profile

## bench-probe: ../shared/tools/latency_probe.py against a local stack (streams open)
bench-probe: $(BENCH_STAMP)
	$(BIN)/python -m bench.probe

## lint: ruff over the code, cfn-lint and sam validate over template.yaml
lint: $(STAMP) $(SAM_STAMP)
	$(BIN)/ruff check layers functions local
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1

## build: build the functions and the engine layer for AWS (needs aws-sam-cli and python3.12)
# sam build wants python3.12 on PATH; a pyenv 3.12 is found when the default is another.
PY312_BIN ?= $(lastword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin))
build: $(SAM_STAMP)
	PATH="$(if $(PY312_BIN),$(PY312_BIN):)$$PATH" $(SAM_VENV)/bin/sam build

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache

## soak: the fault soak alone: 500 runs through random faults (SOAK_RUNS sizes it, SOAK_SEED repeats a plan)
# make test runs the same 500; about three minutes on 2 cores.
soak: $(STAMP)
	$(BIN)/python -m pytest tests/faults/test_soak.py -q
