# make run: install everything, then one monitoring cycle of this machine.
# make test: install everything the tests need, then run them all.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: what the agent uses at run time, and the real parts the tests drive.
APT_RUN := python3 python3-venv python3-dev gcc libvectorscan-dev nmap iputils-ping lm-sensors procps
APT_TEST := $(APT_RUN) rsyslog logrotate systemd-journal-remote podman runc busybox-static \
            prometheus prometheus-alertmanager espeak-ng sox mosquitto mosquitto-clients \
            fail2ban python3-pyinotify systemd iproute2 faketime debootstrap stress-ng \
            slirp4netns tmux chromium chromium-driver curl openssl pipx openssh-client $(APT_BPF)
# llm_traffic's eBPF capture: clang builds it (make bpf), libbpf loads it (collectors/llm_traffic/bpf.py)
APT_BPF := clang libbpf-dev libbpf1
PYTEST_ARGS ?=

PREFIX ?= /opt/monitor-agent
DESTDIR ?=
SERVICE_USER ?= monitor-agent

.PHONY: bpf tracefs run test lint test-under-load bench faults fuzz install apt-run apt-test venv venv-dev ha-venv native clean

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

venv: $(VENV)/.runtime native
venv-dev: $(VENV)/.dev native bpf

# The auth log scanner in C (collectors/auth/_authscan.c), against Vectorscan's libhs. Without it the
# agent runs the same patterns in Python, about 5x slower (docs/auth-log.md, "Speed").
EXT = collectors/auth/_authscan$(shell $(BIN)/python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))" 2>/dev/null)
native: | $(BIN)/python
	@$(MAKE) --no-print-directory "$(EXT)"
collectors/auth/_authscan.cpython-%.so: collectors/auth/_authscan.c
	gcc -O3 -Wall -Wextra -Werror -shared -fPIC \
	  -I"$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['include'])")" \
	  $< -lhs -o $@

# Home Assistant for the text-to-speech tests, in its own venv (its pins clash with ours).
HA_VERSION := 2024.3.3
.venv-ha/.installed-$(HA_VERSION): scripts/setup_home_assistant.sh
	PY=$(PY) bash scripts/setup_home_assistant.sh
ha-venv: .venv-ha/.installed-$(HA_VERSION)

run: apt-run venv
	$(BIN)/python monitor_agent.py --once

# The checks of pyproject.toml: lint (ruff), types (mypy) and the layers (import-linter).
lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# llm_traffic's uprobes (collectors/llm_traffic/capture.bpf.c), compiled once for the BPF target;
# the collector is opt-in and says what is missing when the object is not built.
BPF_OBJ := collectors/llm_traffic/capture.bpf.o
bpf:
	@if command -v clang >/dev/null 2>&1 && [ -f /usr/include/bpf/bpf_helpers.h ]; then \
	  $(MAKE) --no-print-directory "$(BPF_OBJ)"; \
	else echo "clang or libbpf-dev missing: llm_traffic's eBPF object is not built (apt install $(APT_BPF))"; fi
$(BPF_OBJ): collectors/llm_traffic/capture.bpf.c
	clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_$(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/') \
	  -I/usr/include/$(shell uname -m)-linux-gnu -c $< -o $@

# Without CAP_SYS_ADMIN the uprobes are defined in tracefs (tests/test_llm_traffic_capture.py runs
# that way too); mounted as root if missing.
tracefs:
	@if [ "$$(id -u)" = 0 ] && ! mountpoint -q /sys/kernel/tracing; then \
	  mount -t tracefs nodev /sys/kernel/tracing || echo "could not mount tracefs"; fi

test: apt-test venv-dev ha-venv lint tracefs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The whole suite with `stress-ng --cpu 6` beside it (CI's shared 2-core machine, and worse): no
# test may lean on wall-clock speed. stress-ng is stopped by its own pid; pytest's code is returned.
STRESS_CPUS ?= 6
test-under-load: apt-test venv-dev ha-venv
	@stress-ng --cpu $(STRESS_CPUS) --quiet & pid=$$!; \
	trap 'kill -TERM '$$pid' 2>/dev/null; wait '$$pid' 2>/dev/null' EXIT; \
	echo "stress-ng --cpu $(STRESS_CPUS) running as pid $$pid"; \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

faults: apt-test venv-dev
	$(BIN)/python -m pytest -m faults -v $(PYTEST_ARGS)

# bench.peers runs these beside the agent (fail2ban is in APT_TEST already)
APT_BENCH_PEERS := glances fail2ban prometheus-node-exporter monit

bench: apt-test venv-dev
	$(call apt_install,$(APT_BENCH_PEERS))
	$(BIN)/python -m bench

# AddressSanitizer over the C scanner with generated and random input (seconds: FUZZ_SECONDS)
FUZZ_SECONDS ?= 60
fuzz: apt-test venv-dev
	bash tests/fuzz_authscan_asan.sh $(FUZZ_SECONDS)

# Install as a service: the code and its own venv in PREFIX, the unit, an env file for secrets,
# and BINDIR/monitor-agent, the command line as the service runs it (`monitor-agent check`).
# With DESTDIR set, everything lands below it and no user or unit is created or started.
BINDIR ?= /usr/local/bin
install: apt-run
	install -d "$(DESTDIR)$(PREFIX)" "$(DESTDIR)/etc/monitor-agent" "$(DESTDIR)/etc/systemd/system" \
	  "$(DESTDIR)$(BINDIR)"
	git ls-files -z | grep -zv '^tests/\|^bench/\|^\.ci/' | \
	  xargs -0 cp --parents -t "$(DESTDIR)$(PREFIX)"
	# the agent refuses steering files others can write (foundation/trust.py): no installer umask leaks in
	chmod -R go-w "$(DESTDIR)$(PREFIX)"
	$(PY) -m venv "$(DESTDIR)$(PREFIX)/.venv"
	"$(DESTDIR)$(PREFIX)/.venv/bin/pip" install -q -r requirements.txt
	$(MAKE) --no-print-directory BIN="$(DESTDIR)$(PREFIX)/.venv/bin" native
	cp collectors/auth/_authscan.cpython-*.so "$(DESTDIR)$(PREFIX)/collectors/auth/"
	# llm_traffic's eBPF object, when clang can build it here (the collector is opt-in)
	-@$(MAKE) --no-print-directory bpf
	@if [ -f $(BPF_OBJ) ]; then cp $(BPF_OBJ) "$(DESTDIR)$(PREFIX)/collectors/llm_traffic/"; fi
	sed -e 's#/opt/monitor-agent#$(PREFIX)#g' -e 's#^\(User\|Group\)=monitor-agent$$#\1=$(SERVICE_USER)#' \
	  deploy/monitor-agent.service > "$(DESTDIR)/etc/systemd/system/monitor-agent.service"
	# the dashboard's unit: installed, not enabled (it needs a password first: docs/dashboard.md)
	sed -e 's#/opt/monitor-agent#$(PREFIX)#g' -e 's#^\(User\|Group\)=monitor-agent$$#\1=$(SERVICE_USER)#' \
	  deploy/monitor-agent-web.service > "$(DESTDIR)/etc/systemd/system/monitor-agent-web.service"
	sed -e 's#/opt/monitor-agent#$(PREFIX)#g' -e 's#^SERVICE_USER=monitor-agent$$#SERVICE_USER=$(SERVICE_USER)#' \
	  deploy/monitor-agent > "$(DESTDIR)$(BINDIR)/monitor-agent"
	chmod 0755 "$(DESTDIR)$(BINDIR)/monitor-agent"
	[ -f "$(DESTDIR)/etc/monitor-agent/env" ] || \
	  install -m 0640 deploy/env.example "$(DESTDIR)/etc/monitor-agent/env"
	@if [ -z "$(DESTDIR)" ]; then \
	  id -u $(SERVICE_USER) >/dev/null 2>&1 || useradd --system --home-dir /var/lib/monitor-agent \
	    --shell /usr/sbin/nologin $(SERVICE_USER); \
	  chgrp $(SERVICE_USER) /etc/monitor-agent/env; \
	  sh scripts/ping_group_range.sh $(SERVICE_USER); \
	  if [ -d /run/systemd/system ]; then \
	    systemctl daemon-reload && systemctl enable monitor-agent.service && \
	    systemctl restart monitor-agent.service && \
	    systemctl try-restart monitor-agent-web.service && \
	    echo "installed and started: journalctl -u monitor-agent -f; monitor-agent check"; \
	  else echo "installed; systemd is not running here, so the service was not started"; fi; \
	fi

clean:
	rm -rf $(VENV) .venv-ha data .pytest_cache collectors/auth/_authscan.cpython-*.so $(BPF_OBJ)
