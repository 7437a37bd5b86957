# The agent as a container image: docs/container.md says which host mounts and namespaces each
# collector needs, and compose.yaml puts them together.
#
#   podman build --format docker -t localhost/homelab-monitor .   # docker format keeps HEALTHCHECK
#   docker build -t localhost/homelab-monitor .
#
# BASE is any Debian 12 (bookworm) image; the tests build on one made locally with debootstrap
# (tests/test_container.py). A build that reaches PyPI only through a TLS-inspecting proxy passes
# that proxy's CA as a secret: --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt
# Dockerfile is an identical copy (tests/test_container.py keeps them equal): BuildKit cannot
# build from a Dockerfile that is a symbolic link (moby/buildkit#2119).
ARG BASE=debian:bookworm-slim

# --- build: the pinned venv and the C auth scanner (the Makefile's `native`) ---------------------
FROM ${BASE} AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv python3-dev gcc libc6-dev libvectorscan-dev >/dev/null \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/homelab-monitor
COPY requirements.txt ./
RUN --mount=type=secret,id=pip_ca \
    python3 -m venv .venv \
 && if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && .venv/bin/pip install -q --no-cache-dir --no-compile --disable-pip-version-check -r requirements.txt
# The code, and nothing of a checkout's leftovers (caches, a host-built scanner, the tests).
# pyproject.toml beside config.py makes it a checkout, whose relative paths (known_issues.json,
# CONSTRAINTS.md) lead to the working folder (foundation/locations.py).
COPY pyproject.toml setup.py monitor_agent.py config.py known_issues.json CONSTRAINTS.md ./
COPY foundation foundation/
COPY collectors collectors/
COPY analysis analysis/
COPY alerts alerts/
COPY agent agent/
# The scanner with the Makefile's flags (a warning fails the build: the image never falls back to
# Python silently); the checkout installed in place, for the `homelab-monitor` command (setup.py's
# own build of the scanner left out: HOMELAB_MONITOR_NATIVE=0); pip and setuptools removed, as
# nothing installs into this venv later; byte code checked against the sources' hashes, not their
# times (a copy between stages may round those), as the agent's user cannot write it at run time.
RUN --mount=type=secret,id=pip_ca \
    find . -path ./.venv -prune -o \( -name __pycache__ -o -name '*.so' \) -prune -exec rm -rf {} + \
 && PY=.venv/bin/python \
 && gcc -O3 -Wall -Wextra -Werror -shared -fPIC \
      -I"$($PY -c "import sysconfig; print(sysconfig.get_paths()['include'])")" \
      collectors/auth/_authscan.c -lhs \
      -o "collectors/auth/_authscan$($PY -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")" \
 && if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && HOMELAB_MONITOR_NATIVE=0 .venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
      --no-deps --editable . \
 && rm -rf homelab_monitor.egg-info \
 && .venv/bin/pip uninstall -q -y pip setuptools \
 && $PY -m compileall -q -j 0 --invalidation-mode checked-hash \
      .venv/lib monitor_agent.py config.py setup.py foundation collectors analysis alerts agent \
 && .venv/bin/homelab-monitor --version \
 && chmod -R go-w .   # the agent refuses steering files others can write (foundation/trust.py)

# --- runtime ------------------------------------------------------------------------------------
FROM ${BASE}
# systemd: only for journalctl (the journal backend of syslog and auth_log); nothing runs it here.
# libvectorscan5: the runtime library of the C auth scanner.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 nmap iputils-ping lm-sensors procps systemd libvectorscan5 ca-certificates \
      >/dev/null \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 homelab-monitor \
 && useradd --system --uid 10001 --gid 10001 --groups adm --no-create-home \
      --home-dir /var/lib/homelab-monitor --shell /usr/sbin/nologin homelab-monitor \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/homelab-monitor
COPY --from=build /opt/homelab-monitor /opt/homelab-monitor

# adm (gid 4 on Debian and Ubuntu hosts too): /var/log/auth.log and /var/log/syslog are root:adm
# 0640, and journald's files grant adm read access by ACL.
USER homelab-monitor
WORKDIR /opt/homelab-monitor
ENV MONITOR_DATA_DIR=/var/lib/homelab-monitor \
    PATH=/opt/homelab-monitor/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME ["/var/lib/homelab-monitor"]

# Healthy while the last stored cycle started less than three intervals (plus two minutes) ago.
HEALTHCHECK --interval=2m --timeout=30s --start-period=10m --retries=2 \
  CMD homelab-monitor status --json | python -c "import datetime as d, json, os, sys, time; \
last = json.load(sys.stdin).get('last_cycle') or sys.exit('no cycle yet'); \
age = time.time() - d.datetime.fromisoformat(last['started_at']).timestamp(); \
limit = 3 * int(os.environ.get('MONITOR_MONITOR_INTERVAL_SECONDS') or os.environ.get('MONITOR_INTERVAL_SECONDS') or 300) + 120; \
sys.exit(0 if age < limit else f'last cycle {age:.0f} s ago')"

# `docker run IMAGE` monitors; arguments are the agent's: --once --json, status, check, web ...
# homelab-monitor is `python monitor_agent.py` as a command (pyproject.toml's [project.scripts]).
ENTRYPOINT ["/opt/homelab-monitor/.venv/bin/homelab-monitor"]
CMD []
