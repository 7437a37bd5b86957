"""What the LLM runtime tests share: a runtime stand-in holding a model file and a loopback socket."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import stop, unique_name

RUNTIME_SCRIPT = """
import mmap, os, socket, sys, time
model = sys.argv[1] if len(sys.argv) > 1 else os.environ["MT_MODEL"]
held = open(model, "rb")                      # the model file stays open
with open(os.environ["MT_LIB"], "rb") as lib:  # a library stays mapped after its fd is closed
    mapped = mmap.mmap(lib.fileno(), 0, access=mmap.ACCESS_READ)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = int(os.environ["MT_PORT"]) or srv.getsockname()[1]   # 0: connect to its own listener
out = socket.create_connection(("127.0.0.1", port))
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def start_runtime(tmp_path: Path, port: int, model_in_argv: bool, prefix: tuple[str, ...] = ()
                  ) -> tuple[subprocess.Popen, str, Path]:
    """A python process with a unique name holding a .gguf open and a loopback connection."""
    name = unique_name()
    (tmp_path / "bin").mkdir(exist_ok=True)
    link = tmp_path / "bin" / name
    link.symlink_to(os.path.realpath(sys.executable))
    model = tmp_path / "models" / "tiny-q4_0.gguf"
    model.parent.mkdir(exist_ok=True)
    model.write_bytes(b"GGUF" + b"\0" * 4092)
    lib = tmp_path / "lib" / "libggml-base.so"
    lib.parent.mkdir(exist_ok=True)
    lib.write_bytes(b"\x7fELF" + b"\0" * 4092)
    script = tmp_path / "runtime.py"
    script.write_text(RUNTIME_SCRIPT)
    env = {**os.environ, "MT_LIB": str(lib), "MT_PORT": str(port), "MT_MODEL": str(model)}
    args = [*prefix, str(link), str(script)] + ([str(model)] if model_in_argv else [])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        stop(proc)
        raise RuntimeError("the runtime stand-in did not start")
    return proc, name, model
