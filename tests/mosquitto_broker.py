"""A real Mosquitto (Debian's) on a free loopback port with a private config: a password file made
by mosquitto_passwd and ``allow_anonymous false``. Started and stopped by its own process id."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

USER, PASSWORD = "monitor", "s3cret-mqtt-pw-4242"
START_TIMEOUT_S = 30.0


class BrokerError(Exception):
    """Mosquitto could not be started."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed() -> bool:
    """Whether mosquitto and mosquitto_passwd are there (apt: mosquitto, Makefile APT_TEST)."""
    return all(shutil.which(p) or Path("/usr/sbin", p).exists()
               for p in ("mosquitto", "mosquitto_passwd"))


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Mosquitto:
    """One broker with its own folder; ``start()``, ``stop()`` (SIGTERM, then SIGKILL, by pid)."""

    def __init__(self, folder: Path, port: int | None = None, tls: bool = False) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.tls = tls
        self.ca_file = folder / "ca.crt"     # with tls: the CA that signed the broker's certificate
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "mosquitto.log"

    def url(self, user: str = USER, password: str = PASSWORD) -> str:
        """The MQTT_URL of this broker."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}:{password}@127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        """Write the password file and config, run mosquitto in the foreground, wait for it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        passwords = self.folder / "passwd"
        subprocess.run([_binary("mosquitto_passwd"), "-c", "-b", str(passwords), USER, PASSWORD],
                       check=True, capture_output=True, timeout=30)
        passwords.chmod(0o600)
        config = self.folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
                          f"password_file {passwords}\npersistence false\nuser root\n"
                          f"log_dest file {self.log_path}\nlog_type all\n"
                          + (self._certificates() if self.tls else ""))
        with (self.folder / "mosquitto.out").open("wb") as out:
            self.process = subprocess.Popen([_binary("mosquitto"), "-c", str(config)],
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.process.returncode}: "
                                  f"{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise BrokerError(f"mosquitto did not listen within {START_TIMEOUT_S:.0f} s")

    def _certificates(self) -> str:
        """A private CA and a certificate for 127.0.0.1 signed by it (openssl); the TLS lines."""
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.folder, check=True, capture_output=True,
                           timeout=120)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                "ca.crt", "-days", "2", "-subj", "/CN=monitor test CA")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
                "server.csr", "-subj", "/CN=127.0.0.1")
        (self.folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
        return (f"cafile {self.ca_file}\ncertfile {self.folder / 'server.crt'}\n"
                f"keyfile {self.folder / 'server.key'}\n")

    def log_tail(self) -> str:
        """The end of the broker's log (what it said of connections and publishes)."""
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in (self.log_path, self.folder / "mosquitto.out") if p.exists())

    def stop(self) -> None:
        """Stop the broker by its own process id."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
