# make run: install everything, then one monitoring cycle of this machine.
# make test: install everything the tests need, then run them all.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: what the agent uses at run time, and the real parts the tests drive.
APT_RUN := python3 python3-venv nmap iputils-ping lm-sensors procps
APT_TEST := $(APT_RUN) rsyslog logrotate systemd-journal-remote podman runc busybox-static \
            fail2ban systemd iproute2
PYTEST_ARGS ?=

.PHONY: run test bench faults apt-run apt-test venv venv-dev clean

define apt_install
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: install these yourself if missing: $(1)"; fi
endef

apt-run:
	$(call apt_install,$(APT_RUN))

apt-test:
	$(call apt_install,$(APT_TEST))

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

run: apt-run venv
	$(BIN)/python monitor_agent.py --once

test: apt-test venv-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: apt-test venv-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache
