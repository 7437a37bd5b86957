"""A real Docker-compatible engine for tests: podman's API service on private storage.

``PodmanEngine(folder).start()`` writes a containers.conf (ulimits, runc, cgroupfs, file events, its
own tmp dir) and a storage.conf (vfs driver) under ``folder``, imports a busybox-static image
(no registry is reachable), and serves the Docker API on ``folder/api.sock``. ``stop()`` removes
every container it created and stops the service by its own pid. Containers must use
``network_mode="none"`` so podman never touches the host's bridges or firewall.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IMAGE = "localhost/monitor-busybox:latest"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "false", "true", "head", "tail", "cat")
# created by podman as root whatever the configuration says (c/image's blob cache, netavark's run
# dir); removed again when they did not exist before the engine started
HOST_PATHS = (Path("/var/lib/containers"), Path("/run/containers"))

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{tmp}"
volume_path = "{volumes}"
"""

STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{graph}"
runroot = "{run}"
"""


class EngineError(Exception):
    """The podman service could not be started."""


def busybox_tar() -> bytes:
    """A root file system holding busybox-static and a few applet links, as a tar archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


class PodmanEngine:
    """podman system service on private storage, started and stopped by pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "api.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ, CONTAINERS_CONF=str(folder / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(folder / "storage.conf"))
        self._created = [p for p in HOST_PATHS if not p.exists()]

    def podman(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the podman command line against this engine's storage."""
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def start(self) -> PodmanEngine:
        """Write the configuration, import the image, start the API service, wait for its socket."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "containers.conf").write_text(CONTAINERS_CONF.format(
            tmp=self.folder / "libpod-tmp", volumes=self.folder / "volumes"))
        (self.folder / "storage.conf").write_text(STORAGE_CONF.format(
            graph=self.folder / "graph", run=self.folder / "run"))
        tarball = self.folder / "busybox.tar"
        tarball.write_bytes(busybox_tar())
        imported = self.podman("import", str(tarball), IMAGE)
        if imported.returncode != 0:
            raise EngineError(f"podman import failed: {imported.stderr.strip()}")
        return self.serve()

    def serve(self) -> PodmanEngine:
        """Start the API service (again, after stop_service) and wait until its socket answers."""
        # conmon inherits this working folder and writes its "oom" marker there: keep it in tmp.
        with open(self.folder / "service.log", "ab") as log:
            self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", self.url],
                                         env=self.env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.folder)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"podman service exited: {self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.05)
        raise EngineError(f"podman service did not answer within 30 s: {self.log_tail()}")

    def stop_service(self) -> None:
        """Stop only the API service, by its pid: containers keep running under conmon."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
        return True

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the service's log, for error messages."""
        try:
            return (self.folder / "service.log").read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def _conmon_pids(self) -> list[int]:
        pids = []
        for pidfile in (self.folder / "run").glob("*-containers/*/userdata/conmon.pid"):
            try:
                pids.append(int(pidfile.read_text().strip()))
            except (OSError, ValueError):
                continue
        return pids

    def stop(self) -> None:
        """Remove every container, wait for their conmon monitors, then stop the service."""
        monitors = self._conmon_pids()
        self.podman("rm", "--force", "--all", "--time", "0")
        _wait_ended(monitors, timeout=10.0)  # their exit commands recreate /run/containers
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for path in self._created:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.folder / "graph", ignore_errors=True)


def _wait_ended(pids: list[int], timeout: float) -> None:
    """Wait until each process has exited (a zombie counts: PID 1 may never reap it here)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                break
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)


@pytest.fixture(scope="session")
def podman_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanEngine]:
    """One podman API service for the whole test session."""
    engine = PodmanEngine(tmp_path_factory.mktemp("podman"))
    try:
        yield engine.start()
    finally:
        engine.stop()
