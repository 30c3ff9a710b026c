# podtally: `make demo` runs the main job, `make test` the tests. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
STAMP := $(VENV)/.installed
WHEELHOUSE := $(VENV)/wheelhouse
# Debian packages: haproxy for the local stack; curl, wrk and nginx for the benchmarks.
APT_PACKAGES := haproxy curl
BENCH_APT_PACKAGES := wrk nginx-light

.PHONY: setup system-deps demo test lint format bench clean lock proto

setup: system-deps $(STAMP) $(WHEELHOUSE)/.complete $(CHECKOV_VENV)/bin/checkov

# Install missing Debian packages when we can (root, or sudo without a password); otherwise say how.
system-deps:
	@bash scripts/apt-install.sh $(APT_PACKAGES)

$(STAMP): pyproject.toml
	@bash scripts/check-python.sh $(PYTHON)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# The image's locked wheels for this machine (hashes checked): tests/k8s/test_image_recipe.py
# installs from here, offline, exactly as deploy/Dockerfile does.
$(WHEELHOUSE)/.complete: requirements/core.lock requirements/build.lock $(STAMP)
	$(BIN)/python -m pip download --quiet --require-hashes --only-binary=:all: --dest $(WHEELHOUSE) -r requirements/core.lock -r requirements/build.lock
	@touch $@

# Regenerate the hashed lock files after changing a pin in pyproject.toml (docs/kubernetes.md).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o requirements/core.lock
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' | $(BIN)/uv pip compile - --universal --python-version 3.11 --generate-hashes -o requirements/build.lock

# checkov pins many libraries of its own, so it gets a virtualenv of its own.
$(CHECKOV_VENV)/bin/checkov:
	@bash scripts/check-python.sh $(PYTHON)
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

# The gRPC code generated from src/podtally/proto/*.proto (committed; tests/service/
# test_grpc_proto.py checks that regenerating it changes nothing).
PROTO_ARGS := -Isrc --python_out=src --pyi_out=src --grpc_python_out=src
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc $(PROTO_ARGS) src/podtally/proto/*.proto

demo: system-deps $(STAMP)
	$(BIN)/podtally demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench infra
	$(BIN)/ruff format --check src tests bench infra
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench infra
	$(BIN)/ruff check --fix src tests bench infra

test: setup lint
	$(BIN)/pytest

bench: setup
	@bash scripts/apt-install.sh $(BENCH_APT_PACKAGES)
	$(BIN)/python bench/service_bench.py --rounds 5
	$(BIN)/python bench/verify_bench.py
	$(BIN)/python bench/local_bench.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
