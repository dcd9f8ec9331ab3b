# Two commands a newcomer needs: `make run` and `make test`; `make demo` (optional) shows it all
# working with a local Label Studio. Each builds .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
# The converters' hot modules, compiled with mypyc at install (backend/labelbridge/compiled.py);
# BUILT is remade, and they are compiled again, when one of their sources changes.
BUILT  := $(VENV)/.built
COMPILED := $(shell $(PYTHON) backend/labelbridge/compiled.py sources)
DEMO_EXPORT := configs/demo/labelbox-export.ndjson

.PHONY: run demo test unit e2e ls-env lsml-env browser-env pg-env bench clean

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	LABELBRIDGE_COMPILE=0 $(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* $(BUILT); touch $(STAMP)

$(BUILT): $(COMPILED) | $(STAMP)
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(BUILT)

## Serve the ML backend on the bundled demo export (SQLite + file sink, no keys needed).
run: $(BUILT)
	LABELBRIDGE_EXPORT=$${LABELBRIDGE_EXPORT:-$(DEMO_EXPORT)} $(BIN)/labelbridge serve

## Optional: a local Label Studio with one project per demo config, connected to labelbridge on
## the demo export, predictions retrieved; prints the URLs and what to try. Ctrl-C stops it all.
demo: $(BUILT) ls-env
	$(BIN)/python -m labelbridge.tools.demo

## Everything: unit, property, integration and end-to-end tests against a real Label Studio.
test: $(BUILT) ls-env lsml-env browser-env pg-env
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(BUILT) pg-env
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not e2e and not lsml"

e2e: $(BUILT) ls-env lsml-env browser-env
	$(BIN)/python -m pytest -q -p no:cacheprovider -m e2e

## Label Studio 1.23.2 in its own virtualenv (.venv-ls), for the end-to-end tests and the demo.
ls-env: $(STAMP)
	$(BIN)/python -m labelbridge.tools.localls install

## Debian's chromium (apt-get, once) for the browser check of the end-to-end tests.
browser-env: $(STAMP)
	$(BIN)/python tests/e2e/browser.py install

## Debian's postgresql (apt-get, once): the tests start a private cluster of it (tests/pg.py).
pg-env: $(STAMP)
	$(BIN)/python tests/pg.py install

## label-studio-ml 1.0.9 in its own virtualenv (.venv-lsml), for LabelboxModel in the official server.
lsml-env: $(STAMP)
	$(BIN)/python tests/lsml/harness.py install

bench: $(BUILT)
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/masks.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/modelrun.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/replicas.py

clean:
	rm -rf $(VENV) .venv-ls .venv-lsml var .cache
