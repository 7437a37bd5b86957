"""Real rsyslog in the foreground on a private socket, real logger, real logrotate, for tests."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

FORMATS = {  # output file -> rsyslog template
    "traditional.log": "RSYSLOG_TraditionalFileFormat",
    "precise.log": "RSYSLOG_FileFormat",
    "rfc5424.log": "RSYSLOG_SyslogProtocol23Format",
}


def tools_missing() -> list[str]:
    """The tools these helpers need that are not installed."""
    return [t for t in ("rsyslogd", "logger", "logrotate") if shutil.which(t) is None]


class Rsyslog:
    """rsyslogd -n with imuxsock on a private socket and one file per output format."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "log.sock"
        self.pidfile = folder / "rsyslogd.pid"
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        actions = "\n".join(
            f'*.* action(type="omfile" file="{folder / name}" template="{tpl}")'
            for name, tpl in FORMATS.items())
        self.conf = folder / "rsyslog.conf"
        self.conf.write_text(
            f'global(workDirectory="{folder}")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{self.socket}" UseSpecialParser="off" '
            'ParseHostname="on")\n' + actions + "\n")

    def path(self, name: str) -> Path:
        """The output file of one format."""
        return self.folder / name

    def start(self) -> Rsyslog:
        """Start rsyslogd in the foreground and wait for its socket."""
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"rsyslogd did not start: {err}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop rsyslogd by its own pid."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def hup(self) -> None:
        """Ask rsyslogd to reopen its files (what logrotate's postrotate does)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)

    def log(self, *messages: str, tag: str = "testprog", priority: str = "user.info",
            rfc5424: bool = False, sd: tuple[str, str] | None = None) -> None:
        """Send messages through logger to the private socket (one logger run per message)."""
        for message in messages:
            args = ["logger", "-u", str(self.socket), "-t", tag, "-p", priority, "-i"]
            if rfc5424 or sd:
                args.append("--rfc5424")
            if sd:
                args += ["--sd-id", sd[0], "--sd-param", sd[1]]
            subprocess.run([*args, "--", message], check=True, timeout=10)

    def wait_lines(self, name: str, count: int, timeout_s: float = 10.0) -> None:
        """Wait until an output file holds at least ``count`` lines in all."""
        deadline = time.monotonic() + timeout_s
        path = self.path(name)
        while True:
            have = path.read_bytes().count(b"\n") if path.exists() else 0
            if have >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} holds {have} lines, expected {count}")
            time.sleep(0.02)


def logrotate(folder: Path, target: Path, mode: str, rsyslog: Rsyslog | None) -> None:
    """Rotate ``target`` for real with logrotate -f in "create" or "copytruncate" mode."""
    post = ""
    if rsyslog is not None and mode == "create" and rsyslog.proc is not None:
        post = f"    postrotate\n        kill -HUP {rsyslog.proc.pid}\n    endscript\n"
    conf = folder / f"logrotate-{mode}.conf"
    conf.write_text(f"{target} {{\n    rotate 5\n    {mode}\n    nocompress\n    missingok\n"
                    f"{post}}}\n")
    subprocess.run(["logrotate", "-s", str(folder / "logrotate.state"), "-f", str(conf)],
                   check=True, timeout=30, capture_output=True)
