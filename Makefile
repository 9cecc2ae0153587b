# Two commands for a fresh machine (see README):
#   make dev    the dev stack with the example app, on the embedded Kafka broker
#   make test   the whole test suite against a real broker
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: dev test venv broker-fetch bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

broker-fetch: $(STAMP)
	$(PY) -m pipeline.broker.fetch

dev: broker-fetch
	$(VENV)/bin/pipeline dev --app examples.newsletter:app

test: broker-fetch
	$(PY) -m pytest -q -p no:cacheprovider

bench: broker-fetch
	$(PY) bench/baseline.py
	$(PY) bench/matcher.py
	$(PY) bench/cancel.py
	$(PY) bench/steps.py

clean:
	rm -rf $(VENV) .pytest_cache
