"""Things that hang, for stop and timeout tests: a server that never answers, a command whose
child holds its output pipe open."""
from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path


class HungServer:
    """A loopback TCP server that reads requests and never answers (a hung webhook, HA, Ollama)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            conn.settimeout(5)
            try:
                if conn.recv(65536):
                    self.requests.set()
            except OSError:
                continue

    def close(self) -> None:
        """Close the listener and every connection held open."""
        self.sock.close()
        for conn in self._held:
            conn.close()


def hanging_command(folder: Path, name: str = "ping") -> tuple[Path, str]:
    """A script that starts a child holding stdout open, prints a line, and hangs; the child's
    argv[0] is a unique marker (returned) so its processes can be found by the test."""
    marker = f"hung-child-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text("#!/bin/bash\n"
                      f"(exec -a {marker} sleep 1000) &\n"
                      "echo 'PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.'\n"
                      "exec sleep 1000\n")
    script.chmod(0o755)
    return script, marker
