# Everything runs from a local .venv that `make install` creates; only python3 and make are needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit bench profile schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# Compiled LND protos only; see the note in pyproject.toml.
	$(BIN)/python -m pip install -q --no-deps 'lnd-grpc-client==0.6.0' 'aiogrpc==1.8'
	touch $(STAMP)

run: install
	$(BIN)/corridor demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy services schemas projections

test: lint typecheck
	$(BIN)/python -m pytest -q

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/corridor bench --out bench/results.json

# Where the time goes: py-spy profiles of each process during a saturated run (needs ptrace).
profile: install
	$(BIN)/corridor bench --runs 1 --profile bench/profile --out bench/profile/results.json

schemas: install
	$(BIN)/python -m schemas.generate

clean:
	rm -rf $(VENV) .corridor .pytest_cache .mypy_cache .ruff_cache
