"""Debian images for podman, built from the Debian registry with debootstrap and cached as tarballs.

No image registry is reachable here, so a base comes from ``debootstrap`` (the mirror apt on this
machine uses), is ``podman import``-ed, and a ``podman build`` adds layers (``SYSTEMD`` adds
systemd as PID 1). The result is saved to ``CACHE_DIR/<name>-<key>.tar``, the key a hash of the
recipe, so a changed recipe rebuilds and an unchanged one loads in seconds. ``Podman`` keeps its
storage in a folder of its own; ``SystemdContainer`` boots an image with systemd and is removed by
the name it was given. Later container-image work reuses ``ImageRecipe`` and ``ensure_image``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.podman_engine import CONTAINERS_CONF, HOST_PATHS, STORAGE_CONF

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("MONITOR_TEST_IMAGE_CACHE", "/var/cache/monitor-agent-tests"))
# podman here cannot raise these limits itself (DESIGN.md, "Testing with real parts")
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class ImageError(Exception):
    """An image could not be built, loaded or booted."""


@dataclass(frozen=True)
class ImageRecipe:
    """How an image is made: a debootstrap base and a Containerfile on top (``{base}`` is its FROM)."""

    name: str
    suite: str
    debootstrap_args: tuple[str, ...]
    containerfile: str

    @property
    def key(self) -> str:
        """A hash of everything that decides the image's content (not the mirror: same packages)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        """The image's name in podman's storage."""
        return f"localhost/monitor-{self.name}:{self.key}"

    @property
    def cache_path(self) -> Path:
        """Where the saved image is kept between runs."""
        return CACHE_DIR / f"{self.name}-{self.key}.tar"


SYSTEMD = ImageRecipe(
    name="debian-bookworm-systemd",
    suite="bookworm",
    debootstrap_args=("--variant=minbase", "--include=ca-certificates"),
    # make and git: `make install` copies `git ls-files` from a checkout
    # (docs/operations.md, "Running it as a service")
    containerfile="""\
FROM {base}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      systemd systemd-sysv dbus make git >/dev/null \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
""",
)


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt on this machine uses (deb822 ``URIs:`` or one-line ``deb`` entries)."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^\s*(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return FALLBACK_MIRROR


def scratch_folder() -> Path:
    """A fresh folder for a Podman's storage, outside pytest's basetemp: other pytest sessions on
    this machine prune old basetemps, which would delete image layers from under a running test."""
    return Path(tempfile.mkdtemp(prefix="monitor-podman-", dir="/var/tmp"))


class Podman:
    """The podman command line on private storage under ``folder`` (runc, cgroupfs, file events)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "containers.conf").write_text(CONTAINERS_CONF.format(
            tmp=folder / "libpod-tmp", volumes=folder / "volumes"))
        (folder / "storage.conf").write_text(STORAGE_CONF.format(
            graph=folder / "graph", run=folder / "run"))
        self.env = dict(os.environ, CONTAINERS_CONF=str(folder / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(folder / "storage.conf"))
        self._created = [p for p in HOST_PATHS if not p.exists()]

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """Run ``podman ARGS``; raise ImageError with its stderr when ``check`` and it failed."""
        proc = subprocess.run(["podman", *args], env=self.env, input=stdin, capture_output=True,
                              timeout=timeout, check=False, cwd=self.folder)
        if check and proc.returncode != 0:
            raise ImageError(f"podman {args[0]} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
        return proc

    def has_image(self, tag: str) -> bool:
        """Whether ``tag`` is in this storage."""
        return self.run("image", "exists", tag, check=False).returncode == 0

    def clean(self) -> None:
        """Remove the storage and the folder (after every container of it is gone)."""
        for path in self._created:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def ensure_image(podman: Podman, recipe: ImageRecipe, timeout: float = 900) -> str:
    """The recipe's image in ``podman``'s storage: loaded from the cache, else built and cached."""
    if podman.has_image(recipe.tag):
        return recipe.tag
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{recipe.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions must not build the same image at once
        if not recipe.cache_path.is_file():
            started = time.monotonic()
            _build(podman, recipe, timeout)
            log.info("built %s in %.0f s", recipe.tag, time.monotonic() - started)
            return recipe.tag
    podman.run("load", "-q", "-i", str(recipe.cache_path), timeout=timeout)
    if not podman.has_image(recipe.tag):
        raise ImageError(f"{recipe.cache_path} does not hold {recipe.tag}: delete it to rebuild")
    return recipe.tag


def _build(podman: Podman, recipe: ImageRecipe, timeout: float) -> None:
    """debootstrap, import, build, save to a temporary name, then rename into the cache."""
    work = podman.folder / f"build-{recipe.key}"
    rootfs = work / "rootfs"
    shutil.rmtree(work, ignore_errors=True)
    rootfs.mkdir(parents=True)
    try:
        boot = subprocess.run(["debootstrap", *recipe.debootstrap_args, recipe.suite, str(rootfs),
                               debian_mirror()], capture_output=True, text=True, timeout=timeout,
                              check=False)
        if boot.returncode != 0:
            raise ImageError(f"debootstrap failed: {(boot.stdout + boot.stderr)[-2000:]}")
        base = f"localhost/monitor-{recipe.name}-base:{recipe.key}"
        tar = subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                             capture_output=True, timeout=timeout, check=True)
        podman.run("import", "-", base, stdin=tar.stdout, timeout=timeout)
        del tar
        (work / "Containerfile").write_text(recipe.containerfile.format(base=base))
        # host network for the build only: it reaches the Debian registry, and no bridge or
        # firewall rule is created on the host
        (work / "context").mkdir()
        podman.run("build", "--network=host", "-q", "-t", recipe.tag, "-f",
                   str(work / "Containerfile"), str(work / "context"), timeout=timeout)
        partial = recipe.cache_path.with_suffix(f".{os.getpid()}.tmp")
        podman.run("save", "-q", "-o", str(partial), recipe.tag, timeout=timeout)
        partial.replace(recipe.cache_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SystemdContainer:
    """One container booted with systemd as PID 1, known by the unique name it was started with."""

    def __init__(self, podman: Podman, image: str, prefix: str = "monitor-systemd") -> None:
        self.podman = podman
        self.image = image
        self.name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.started = False

    def start(self, network: str = "slirp4netns", extra: Sequence[str] = (),
              timeout: float = 120) -> SystemdContainer:
        """Boot it and wait until ``systemctl is-system-running`` says ``running``."""
        # slirp4netns: a network namespace of its own (its loopback is the container's), with a
        # user-mode route out for package installs; nothing is bridged on the host.
        self.podman.run("run", "-d", "--name", self.name, "--systemd=always",
                        "--cgroup-manager=cgroupfs", *ULIMITS, f"--network={network}",
                        "--hostname", "monitor-test", *extra, self.image, "/sbin/init")
        self.started = True
        deadline = time.monotonic() + timeout
        while True:  # until PID 1 has its bus, systemctl cannot even ask
            state = self.sh("systemctl is-system-running --wait", timeout=timeout, check=False)
            if state.stdout.strip() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if state.stdout.strip() != "running":
            failed = self.sh("systemctl --failed --no-legend --plain", check=False).stdout
            raise ImageError(f"systemd in {self.name} is {state.stdout.strip()!r} "
                             f"({state.stderr.strip()}); failed units: {failed.strip() or 'none'}")
        return self

    @property
    def pid(self) -> int:
        """The host pid of its PID 1 (for nsenter into its namespaces)."""
        out = self.podman.run("inspect", "--format", "{{.State.Pid}}", self.name).stdout
        return int(out.decode().strip())

    def trust_like_host(self) -> None:
        """Give it this machine's CA bundle (and pip's use of it), so it reaches the registries
        through the same TLS-inspecting proxy, if any, that this machine trusts."""
        self.podman.run("cp", HOST_CA_BUNDLE, f"{self.name}:{HOST_CA_BUNDLE}")
        self.sh(f"printf '[global]\\ncert = {HOST_CA_BUNDLE}\\n' > /etc/pip.conf")

    def copy_checkout(self, root: Path, dest: str) -> None:
        """Copy a git checkout's files (tracked, and new ones not ignored) to ``dest``, as a
        checkout again: `make install` copies what `git ls-files` lists."""
        def listed(*flags: str) -> set[bytes]:
            out = subprocess.run(["git", "ls-files", "-z", *flags], cwd=root,
                                 capture_output=True, timeout=60, check=True).stdout
            return {n for n in out.split(b"\0") if n and os.path.lexists(root / n.decode())}

        # untracked symlinks are a worktree's links to shared venvs, not project files
        new = {n for n in listed("--others", "--exclude-standard")
               if not (root / n.decode()).is_symlink()}
        names = sorted(listed("--cached") | new)
        tar = subprocess.run(["tar", "-C", str(root), "--null", "-T", "-", "-c"],
                             input=b"\0".join(names), capture_output=True, timeout=120,
                             check=True).stdout
        self.exec("bash", "-c", f"mkdir -p {dest} && tar -x -C {dest}", stdin=tar)
        self.sh(f"cd {dest} && git init -q && git add -A")

    def exec(self, *argv: str, timeout: float = 120, check: bool = True,
             stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """Run a command inside as root; text output."""
        proc = self.podman.run("exec", *(["-i"] if stdin is not None else []), self.name, *argv,
                               timeout=timeout, check=False, stdin=stdin)
        result = subprocess.CompletedProcess(proc.args, proc.returncode,
                                             proc.stdout.decode(errors="replace"),
                                             proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise ImageError(f"{' '.join(argv)[:200]} failed ({proc.returncode}) in {self.name}:"
                             f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def sh(self, script: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell script inside as root."""
        return self.exec("bash", "-c", script, timeout=timeout, check=check)

    def stop(self) -> None:
        """Remove the container (by its own name), systemd's orderly shutdown first."""
        if self.started:
            self.podman.run("rm", "--force", "--time", "10", self.name, timeout=60, check=False)
            self.started = False
