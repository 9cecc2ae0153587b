# Two commands for a fresh machine (see README):
#   make dev    the dev stack with the example app, on the embedded Kafka broker
#   make test   the whole test suite against a real broker
#   make check  the one-minute gate: lint (ruff), types (mypy), unit tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: dev test check venv broker-fetch registry-fetch browser containers images bench clean node-apps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

broker-fetch: $(STAMP)
	$(PY) -m pipeline.broker.fetch

# The schema registry tests run a real Apicurio Registry, built once from Maven Central (pipeline/testing/registry.py)
registry-fetch: $(STAMP)
	$(PY) -m pipeline.testing.registry

dev: broker-fetch
	$(VENV)/bin/pipeline dev --app examples.newsletter:app

# The browser test drives Debian's chromium with Playwright; install it when missing (root + apt-get),
# otherwise that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing chromium for the browser test (apt-get)"; \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	        || echo "chromium could not be installed: the browser test will be skipped"; \
	    else echo "no chromium and no root apt-get: the browser test will be skipped"; fi; }

# The container tests (tests/containers) run on podman: installed when missing (root + apt-get), with runc and
# debootstrap, which builds the images' bases when no registry answers; otherwise they are skipped and say why.
containers:
	@{ command -v podman && command -v runc && command -v debootstrap; } >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing podman for the container tests (apt-get)"; \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap \
	         uidmap slirp4netns fuse-overlayfs >/dev/null) \
	        || echo "podman could not be installed: the container tests will be skipped"; \
	    else echo "no podman and no root apt-get: the container tests will be skipped"; fi; }

# The service image and the Kafka image (docs/deploy.md): official bases, or Debian's packages when no registry answers
images: broker-fetch
	PYTHON=$(PY) deploy/images.sh

check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

# --durations=25 prints the slowest tests of every run; pytest-timeout (pyproject.toml) fails a test that hangs.
# The tests wait on Kafka far more than they compute: TEST_WORKERS pytest-xdist workers (default 3, on 2 cores)
# share one embedded broker (pipeline/testing/plugin.py); TEST_WORKERS=0 runs them in one process.
# The default (load) distribution: a worker that crashes has its tests given to the others (with loadgroup, a
# crashed worker left the session waiting at the end). The registry tests start one JVM per worker they land on.
TEST_WORKERS ?= 3
# docs/producing-events.md's Node producer example runs in tests/e2e/test_producers.py (kafkajs from npm)
tests/producers/node/node_modules/.installed: tests/producers/node/package.json tests/producers/node/package-lock.json
	cd tests/producers/node && npm ci --no-audit --no-fund
	touch $@

# tests/http runs apps on the official Inngest SDKs: inngest-py comes with the test extra, inngest-js 3.x (the
# seed's API) and the latest 4.x with tsx from npm (tests/http/node*/package-lock.json).
tests/http/%/node_modules/.installed: tests/http/%/package.json tests/http/%/package-lock.json
	cd tests/http/$* && npm ci --no-audit --no-fund
	touch $@

node-apps: tests/http/node/node_modules/.installed tests/http/node4/node_modules/.installed

test: broker-fetch registry-fetch browser containers node-apps tests/producers/node/node_modules/.installed
	$(PY) -m pytest -q -p no:cacheprovider --durations=25 -n $(TEST_WORKERS)

bench: broker-fetch
	$(PY) bench/baseline.py
	$(PY) bench/app_build.py
	$(PY) bench/matcher.py
	$(PY) bench/ingest.py
	$(PY) bench/cancel.py
	$(PY) bench/steps.py
	$(PY) bench/source.py

clean:
	rm -rf $(VENV) .pytest_cache
