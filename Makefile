# Everything a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS := tests/peers/node_modules/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

# Real Bayeux peers (CometD's own client and server, Faye) that the push-mode tests run against.
$(PEERS): tests/peers/package.json
	cd tests/peers && npm install --no-audit --no-fund --no-package-lock
	touch $(PEERS)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gws-archiver demo

test: $(STAMP) $(PEERS)
	$(BIN)/ruff check archiver gws_simulator gws_bench tests
	$(BIN)/ruff format --check archiver gws_simulator gws_bench tests
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check archiver gws_simulator gws_bench tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
