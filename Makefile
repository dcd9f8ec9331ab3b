# Two commands a newcomer needs: `make run` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO_EXPORT := configs/demo/labelbox-export.ndjson

.PHONY: run test unit e2e ls-env bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

## Serve the ML backend on the bundled demo export (SQLite + file sink, no keys needed).
run: $(STAMP)
	LABELBRIDGE_EXPORT=$${LABELBRIDGE_EXPORT:-$(DEMO_EXPORT)} $(BIN)/labelbridge serve

## Everything: unit, property, integration and end-to-end tests against a real Label Studio.
test: $(STAMP) ls-env
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not e2e"

e2e: $(STAMP) ls-env
	$(BIN)/python -m pytest -q -p no:cacheprovider -m e2e

## Label Studio 1.23.2 in its own virtualenv (.venv-ls), for the end-to-end tests.
ls-env: $(STAMP)
	$(BIN)/python tests/e2e/lsharness.py install

bench: $(STAMP)
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .venv-ls var .cache
