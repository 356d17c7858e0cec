# Everything runs from a local .venv that `make install` creates; only python3 and make are needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip shows its progress on a terminal and stays quiet in logs (CI).
PIP_QUIET := $(shell test -t 2 || echo -q)

.PHONY: install lock audit run test drills lint typecheck unit bench profile schemas sim release clean

install: $(STAMP)

# The venv is built from the lock alone (hashes checked, no resolution), and rebuilt from scratch
# when the lock changes, so it never keeps a package the lock dropped. `pip check` proves the
# set is complete. The project itself goes in editable, built with the locked setuptools.
$(STAMP): requirements/dev.lock
	@echo "corridor: installing the locked packages into $(VENV) (first run only; 1-2 minutes)" >&2
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install $(PIP_QUIET) --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve the dependency ranges in pyproject.toml into the hashed lock files (needs PyPI).
# dev.lock: everything `make install`, CI and the tests use; runtime.lock: `pip install .` alone,
# for the container image.
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 --quiet
lock:
	test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.lock

run: install
	$(BIN)/corridor demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# Security lint: no high-severity finding (the generated LND stubs are not ours to change).
	$(BIN)/bandit -r services schemas projections -x services/lightning/lnd_proto -lll -q

# Known vulnerabilities in the locked set, from PyPI's advisory data. --strict fails when a package
# could not be checked, so an unreachable database is a failure, never a silent pass.
audit: install
	$(BIN)/pip-audit -r requirements/dev.lock --require-hashes --disable-pip --strict --progress-spinner off

typecheck: install
	$(BIN)/mypy services schemas projections

test: lint typecheck
	$(BIN)/python -m pytest -q

# Real-process fault drills (tests/faults/, README "Testing"): kill -9 and restarts of every
# part under steady load, each checked against the simulated network's own ledger.
drills: install
	$(BIN)/python -m pytest -q -m drill --timeout 300 tests/faults

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/corridor bench --out bench/results.json

# Where the time goes: py-spy profiles of each process during a saturated run (needs ptrace).
profile: install
	$(BIN)/corridor bench --runs 1 --profile bench/profile --out bench/profile/results.json

# The deterministic simulation (ADR 0099): SEEDS seeds, each replayable alone with --seed S.
SEEDS ?= 300
sim: install
	mkdir -p .corridor
	$(BIN)/corridor simulate --seeds $(SEEDS) --json .corridor/sim.json

# JSON Schema of the NATS messages and the HTTP API's OpenAPI document (docs/api/openapi.json);
# tests fail when either is stale.
schemas: install
	$(BIN)/python -m schemas.generate
	$(BIN)/python -m services.bus.asyncapi
	$(BIN)/python -m services.http.openapi

# A signed release in dist/release/ (ADR 0185): the wheel, the image context and a CycloneDX SBOM
# of the runtime lock, all from the tracked files of HEAD only, and manifest.json (each
# artefact's size and sha256) signed with RELEASE_KEY. Offline; everything is stamped with the
# commit's time, so the same commit gives the same bytes. Without RELEASE_KEY a development key
# is made in .corridor/release/: never publish a release signed with it.
RELEASE_DIR := dist/release
RELEASE_BUILD := build/release-src
RELEASE_DEV_KEY := .corridor/release/dev-release.key
RELEASE_KEY ?= $(RELEASE_DEV_KEY)
RELEASE_KEYRING ?= $(RELEASE_KEY).pub.json
release: install
	@test -z "$$(git status --porcelain --untracked-files=no)" || echo "corridor: release: uncommitted changes are not in the release (it is built from HEAD)" >&2
	@test -f $(RELEASE_KEY) || test "$(RELEASE_KEY)" != "$(RELEASE_DEV_KEY)" || $(BIN)/corridor release keygen --out $(RELEASE_DEV_KEY) --comment "development key: never publish"
	rm -rf $(RELEASE_DIR) $(RELEASE_BUILD)
	mkdir -p $(RELEASE_DIR) $(RELEASE_BUILD)
	$(eval VERSION := $(shell git show HEAD:pyproject.toml | $(BIN)/python -c 'import sys, tomllib; print(tomllib.loads(sys.stdin.read())["project"]["version"])'))
	$(eval COMMIT := $(shell git rev-parse HEAD))
	$(eval export SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct HEAD))
	git archive --format=tar HEAD | gzip -n -9 > $(RELEASE_DIR)/corridor-$(VERSION)-image-context.tar.gz
	tar -xzf $(RELEASE_DIR)/corridor-$(VERSION)-image-context.tar.gz -C $(RELEASE_BUILD)
	cd $(RELEASE_BUILD) && $(CURDIR)/$(BIN)/python -m pip wheel $(PIP_QUIET) --disable-pip-version-check --no-deps --no-build-isolation -w $(abspath $(RELEASE_DIR)) .
	$(BIN)/cyclonedx-py requirements --output-reproducible --pyproject $(RELEASE_BUILD)/pyproject.toml -o $(RELEASE_DIR)/corridor-$(VERSION)-sbom.cdx.json $(RELEASE_BUILD)/requirements/runtime.lock
	cp $(RELEASE_KEYRING) $(RELEASE_DIR)/release-keys.json
	$(BIN)/corridor release sign --key $(RELEASE_KEY) --dir $(RELEASE_DIR) --version $(VERSION) --git-commit $(COMMIT) --created-at "$$(git log -1 --format=%cI HEAD)"
	rm -rf $(RELEASE_BUILD)
	$(BIN)/corridor release verify --dir $(RELEASE_DIR) --keyring $(RELEASE_KEYRING)

clean:
	rm -rf $(VENV) .corridor .pytest_cache .mypy_cache .ruff_cache build dist
