# Stepstream: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo dev test lint build clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: start the local stack, run service_health_pipeline on the queue, stream it live
demo: $(STAMP)
	$(BIN)/stepstream demo

## dev: start the local stack and keep it running (API on :8000)
dev: $(STAMP)
	$(BIN)/stepstream dev

## test: the whole suite, unit and integration (uses the Redis on 127.0.0.1:6379 if one answers)
test: $(STAMP)
	$(BIN)/python tests/redis_url.py > $(VENV)/redis_url
	REDIS_URL="$$(cat $(VENV)/redis_url)" $(BIN)/python -m pytest -n 2 --dist loadgroup

## lint: check template.yaml with cfn-lint
lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

## build: build the functions and the engine layer for AWS (needs aws-sam-cli and python3.12)
build:
	sam build

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
