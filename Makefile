# The verbs people type. Every target installs what it needs first (scripts/setup.sh is quick
# when nothing changed), so each works on a fresh Debian 12 machine.
VENV ?= .venv
PY := $(VENV)/bin/python
TOPOLOGY ?= compute
# make image IMAGE_BASE=... IMAGE_NAME=...: both optional (scripts/image.sh has the defaults)
IMAGE_BASE ?=
IMAGE_NAME ?=
PYTEST_ARGS ?=

.PHONY: setup test lint unit lab lab-down plan bench bench-pg agent wheel image bundle clean

setup:
	@bash scripts/setup.sh

## Static checks: ruff everywhere, mypy over infra/ and bootstrap/, ansible-lint on the roles.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy infra bootstrap
	cd ansible && ../$(VENV)/bin/ansible-lint --offline --profile production site.yml bundle.yml roles

## The whole suite: lint, then every test (the lab VM tests boot their own VM).
test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## Fast tests only (no lab VM).
unit: setup
	$(VENV)/bin/pytest -m "not lab" $(PYTEST_ARGS)

## The main job: a local stand-in for a Compute Engine VM, provisioned by the same roles.
lab: setup
	$(PY) -m tests.lab up

lab-down: setup
	$(PY) -m tests.lab down

## Review a topology offline, under Pulumi's mocks: make plan TOPOLOGY=cloudrun|compute|hybrid
plan: setup bundle
	$(PY) -m infra.plan --topology $(TOPOLOGY)

## What the VMs provision themselves from (pulumi up uploads it): dist/super-spine-bundle.tar
bundle: setup
	$(PY) -m infra.bundle --out dist/super-spine-bundle.tar

## Every benchmark in one run (the PostgreSQL rows included): bench/results/latest.{json,md}
bench: setup
	$(PY) -m bench.run

## The PostgreSQL tier's rows alone: bench/results/pg-latest.{json,md}
bench-pg: setup
	$(PY) -m bench.pg

## Run the agent locally on the embedded default (./storage, backup in ./.storage-backup).
agent: setup
	$(VENV)/bin/spine-agent run --config examples/agent-local.yaml

wheel: setup
	$(PY) -m build --wheel --outdir dist .

## The agent's container image, tagged by a hash of its inputs (prints the reference).
image: setup
	VENV=$(VENV) bash scripts/image.sh $(if $(IMAGE_BASE),--base $(IMAGE_BASE)) $(if $(IMAGE_NAME),--name $(IMAGE_NAME))

clean:
	rm -rf dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
