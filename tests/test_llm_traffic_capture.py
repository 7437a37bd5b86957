"""llm_traffic's capture (collectors/llm_traffic/trace.py, bpf.py) with REAL eBPF: the uprobes of
capture.bpf.o, loaded by libbpf, on this machine's OpenSSL 3, a loopback TLS server speaking
HTTP/1.1 and HTTP/2, and real clients (Python's ssl + http.client, curl, httpx over HTTP/2) as
separate processes. Root only: the CI runs these as root, and without the capabilities they fail
with the reason (never skip).

All traffic goes to 127.0.0.1. Every process started here is stopped by its own pid. The tests
poll drain() (up to WAIT_S) and never assert timings: they must pass on a loaded 2-core machine.
The server answers after DELAY_S so that short-lived clients (curl) are still alive when the
tracer reads their /proc/PID/exe (a known limitation: see trace.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collectors.llm_traffic import bpf, libssl, trace
from collectors.llm_traffic.exchange import Exchange

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
WAIT_S = 30.0
DELAY_S = 1.0
TOKEN = "sk-proj-CaptureTestNeverLeaks-0123456789"
ANTHROPIC_KEY = "sk-ant-api03-CaptureTestNeverLeaks-abcdef"

SERVER = r'''
import json, socket, ssl, sys, threading, time
import h2.config, h2.connection, h2.events

cert, key, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}

def answer(path, body):
    """(content type, body chunks) for a request: OpenAI or Anthropic shaped, JSON or SSE."""
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        req = {}
    time.sleep(delay)
    if path.startswith("/v1/messages"):
        doc = {"id": "msg_1", "type": "message", "role": "assistant", "model": req.get("model"),
               "content": [{"type": "text", "text": "hi"}],
               "usage": {"input_tokens": 9, "output_tokens": 3}}
        return "application/json", [json.dumps(doc).encode()]
    if req.get("stream"):
        events = [{"id": "c1", "choices": [{"delta": {"content": w}}]} for w in ("Hel", "lo")]
        events.append({"id": "c1", "choices": [], "usage": USAGE})
        chunks = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
        return "text/event-stream", [*chunks, b"data: [DONE]\n\n"]
    doc = {"id": "chatcmpl-1", "object": "chat.completion", "model": req.get("model"),
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
           "usage": USAGE}
    return "application/json", [json.dumps(doc).encode()]

def http1(s):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                return
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        path = lines[0].split(b" ")[1].decode()
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buf) < length:
            buf += s.recv(65536)
        body, buf = buf[:length], buf[length:]
        ctype, chunks = answer(path, body)
        if ctype == "text/event-stream":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            for c in chunks:
                s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            s.sendall(b"0\r\n\r\n")
        else:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                      % (ctype.encode(), len(chunks[0]), chunks[0]))

def http2(s):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    heads, bodies = {}, {}
    while True:
        data = s.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                heads[ev.stream_id] = dict(ev.headers)
                bodies[ev.stream_id] = b""
            elif isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ctype, chunks = answer(heads[ev.stream_id][":path"], bodies.pop(ev.stream_id))
                conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", ctype)])
                for c in chunks:
                    conn.send_data(ev.stream_id, c)
                conn.end_stream(ev.stream_id)
        s.sendall(conn.data_to_send())

def serve(raw):
    try:
        with ctx.wrap_socket(raw, server_side=True) as s:
            (http2 if s.selected_alpn_protocol() == "h2" else http1)(s)
    except (OSError, ssl.SSLError) as err:
        print("server:", err, file=sys.stderr)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2", "http/1.1"])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
while True:
    raw, _ = listener.accept()
    threading.Thread(target=serve, args=(raw,), daemon=True).start()
'''

PY_CLIENT = r'''
import http.client, json, socket, ssl, sys
port, token = int(sys.argv[1]), sys.argv[2]

class Conn(http.client.HTTPSConnection):
    def connect(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port))
        self.sock = ctx.wrap_socket(raw, server_hostname="api.openai.com")

conn = Conn("api.openai.com", port)
out = []
for stream in (False, True):
    body = json.dumps({"model": "gpt-4o-mini", "stream": stream,
                       "messages": [{"role": "user", "content": "say hello \\x0a\n"}]}).encode()
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Host": "api.openai.com", "Authorization": "Bearer " + token,
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    out.append({"sent": body.decode(), "status": resp.status, "received": resp.read().decode()})
print(json.dumps(out))
'''

HTTPX_CLIENT = r'''
import json, sys
import httpx
port, token = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi over h2"}]})
with httpx.Client(http2=True, verify=False) as client:
    resp = client.post(f"https://127.0.0.1:{port}/v1/chat/completions", content=body.encode(),
                       headers={"Host": "api.openai.com", "Authorization": "Bearer " + token,
                                "Content-Type": "application/json"},
                       extensions={"sni_hostname": "api.openai.com"})
    print(json.dumps({"sent": body, "status": resp.status_code, "version": resp.http_version,
                      "received": resp.text}))
'''


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def capture_ready() -> None:
    """Real eBPF needs root (or CAP_BPF + CAP_PERFMON) and the rest: fail, never skip."""
    if os.geteuid() != 0:
        pytest.fail("the llm_traffic capture tests need root (the CI runs them as root)")
    reason = trace.unavailable_reason()
    if reason is not None:
        pytest.fail(f"eBPF capture is unavailable here: {reason}")


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process this test started, by its own pid."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class Server:
    port: int
    pid: int


@pytest.fixture(scope="module")
def tls_server(capture_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The loopback TLS server (HTTP/1.1 and, by ALPN, HTTP/2), a self-signed certificate."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    script = folder / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen([PYTHON, str(script), str(cert), str(key), str(DELAY_S)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"the test server did not start: {line!r}"
        yield Server(int(line), proc.pid)
    finally:
        stop(proc)


class Captured:
    """A started Tracer, and every exchange drained from it (tests look up theirs by pid)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.seen: list[Exchange] = []

    def wait_for(self, pred: Callable[[Exchange], bool], count: int = 1,
                 timeout: float = WAIT_S) -> list[Exchange]:
        deadline = time.monotonic() + timeout
        while True:
            self.seen += self.tracer.drain()
            found = [ex for ex in self.seen if pred(ex)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture(scope="module")
def captured(capture_ready: None) -> Iterator[Captured]:
    tracer = trace.Tracer(capture_bytes=16384)
    tracer.start()
    try:
        assert tracer.running
        yield Captured(tracer)
    finally:
        tracer.stop()
    assert not tracer.running


def run_client(argv: list[str]) -> tuple[int, str]:
    """Run a client to its end: (its pid, its stdout)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 0, f"{argv[0]} failed: {err}"
    return proc.pid, out


def assert_no_secret(exchanges: list[Exchange]) -> None:
    for ex in exchanges:
        text = repr(ex)
        assert TOKEN not in text and ANTHROPIC_KEY not in text


# ---------------------------------------------------------------------------------------------
# the clients

def test_python_http_client_keep_alive_json_and_sse(captured: Captured, tls_server: Server) -> None:
    pid, out = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
    sent = json.loads(out)
    found = captured.wait_for(lambda ex: ex.pid == pid, count=2)
    assert len(found) == 2, f"expected 2 exchanges of pid {pid}, got {found}; {captured.tracer.stats()}"
    found.sort(key=lambda ex: ex.started_at)
    for ex, want in zip(found, sent, strict=True):
        assert ex.comm == "python"
        assert ex.exe == os.path.realpath(PYTHON)
        assert (ex.sni, ex.authority, ex.host) == ("api.openai.com",) * 3
        assert (ex.http_version, ex.method, ex.path) == ("1.1", "POST", "/v1/chat/completions")
        assert ex.request_body == want["sent"].encode() and not ex.request_truncated
        assert ex.request_headers["authorization"] == "<redacted>"
        assert ex.status == want["status"] == 200
        assert ex.response_body.decode() == want["received"]          # de-chunked for SSE
        assert ex.request_bytes >= len(ex.request_body) + 100
        assert ex.response_bytes >= len(want["received"])
        assert ex.ended_at is not None and ex.ended_at >= ex.started_at
    json_ex, sse_ex = found
    assert json.loads(json_ex.response_body)["usage"]["total_tokens"] == 16
    assert sse_ex.response_headers["content-type"] == "text/event-stream"
    assert sse_ex.response_body.decode() == sent[1]["received"]       # de-chunked
    assert b'"usage"' in sse_ex.response_body and sse_ex.response_body.endswith(b"[DONE]\n\n")
    assert_no_secret(captured.seen)


def test_curl_http1_anthropic(captured: Captured, tls_server: Server) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed (apt install curl)"
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hello from curl"}]})
    pid, out = run_client([
        curl, "-sS", "-k", "--http1.1", "--resolve", f"api.anthropic.com:{tls_server.port}:127.0.0.1",
        f"https://api.anthropic.com:{tls_server.port}/v1/messages", "-H", f"x-api-key: {ANTHROPIC_KEY}",
        "-H", "anthropic-version: 2023-06-01", "-H", "content-type: application/json",
        "--data-binary", body])
    [ex] = captured.wait_for(lambda ex: ex.pid == pid)
    assert ex.comm == "curl" and ex.exe == os.path.realpath(curl)
    assert ex.sni == "api.anthropic.com"
    assert ex.authority == f"api.anthropic.com:{tls_server.port}" and ex.host == "api.anthropic.com"
    assert (ex.http_version, ex.method, ex.path) == ("1.1", "POST", "/v1/messages")
    assert ex.request_body == body.encode()
    assert ex.request_headers["x-api-key"] == "<redacted>"
    assert ex.request_headers["anthropic-version"] == "2023-06-01"
    assert ex.status == 200 and ex.response_body == out.encode()
    assert json.loads(ex.response_body)["usage"] == {"input_tokens": 9, "output_tokens": 3}
    assert ex.request_bytes >= len(body) + 100 and ex.response_bytes >= len(out) + 40
    assert_no_secret(captured.seen)


def test_curl_http2(captured: Captured, tls_server: Server) -> None:
    curl = shutil.which("curl")
    assert curl is not None
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "h2 from curl"}]})
    pid, out = run_client([
        curl, "-sS", "-k", "--http2", "--resolve", f"api.anthropic.com:{tls_server.port}:127.0.0.1",
        f"https://api.anthropic.com:{tls_server.port}/v1/messages", "-H", f"x-api-key: {ANTHROPIC_KEY}",
        "-H", "content-type: application/json", "--data-binary", body])
    [ex] = captured.wait_for(lambda ex: ex.pid == pid)
    assert (ex.comm, ex.sni, ex.http_version, ex.method, ex.path) == (
        "curl", "api.anthropic.com", "2", "POST", "/v1/messages")
    assert ex.authority == f"api.anthropic.com:{tls_server.port}"
    assert ex.request_body == body.encode() and ex.response_body == out.encode()
    assert ex.status == 200 and ex.request_headers["x-api-key"] == "<redacted>"
    assert_no_secret(captured.seen)


def test_httpx_http2_openai(captured: Captured, tls_server: Server) -> None:
    pid, out = run_client([PYTHON, "-c", HTTPX_CLIENT, str(tls_server.port), TOKEN])
    sent = json.loads(out)
    assert sent["version"] == "HTTP/2"
    [ex] = captured.wait_for(lambda ex: ex.pid == pid)
    assert ex.comm == "python" and ex.exe == os.path.realpath(PYTHON)
    assert (ex.sni, ex.authority) == ("api.openai.com", "api.openai.com")
    assert (ex.http_version, ex.method, ex.path) == ("2", "POST", "/v1/chat/completions")
    assert ex.request_body == sent["sent"].encode() and not ex.request_truncated
    assert ex.request_headers["authorization"] == "<redacted>"
    assert ex.status == 200 and ex.response_body == sent["received"].encode()
    assert json.loads(ex.response_body)["usage"]["prompt_tokens"] == 11
    assert ex.request_bytes >= len(sent["sent"]) + 9 and ex.response_bytes >= len(sent["received"])
    assert_no_secret(captured.seen)


def test_stats_and_server_side_ignored(captured: Captured, tls_server: Server) -> None:
    run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
    deadline = time.monotonic() + WAIT_S
    while captured.tracer.stats()["server_connections"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    stats = captured.tracer.stats()
    assert set(trace.STATS) <= set(stats)
    assert stats["events"] > 0 and stats["bytes_captured"] > 0
    assert stats["server_connections"] >= 1          # the test server's side of a connection
    # the server answered every request (and is traced too), yet no exchange is the server's
    captured.wait_for(lambda ex: False, timeout=1.0)
    assert not [ex for ex in captured.seen if ex.pid == tls_server.pid]
    assert not [ex for ex in captured.seen if ex.method.startswith("HTTP")]
    assert_no_secret(captured.seen)


# ---------------------------------------------------------------------------------------------
# robustness

def perf_fds() -> int:
    """This process's perf event descriptors: each attached uprobe holds one."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
    return count


def test_exported_functions_capture_too(capture_ready: None, tls_server: Server) -> None:
    """Where OpenSSL's internal functions cannot be found, the exported SSL_write(_ex) /
    SSL_read(_ex) are probed: the same exchanges (curl calls SSL_write and SSL_read, Python the
    _ex variants)."""
    tracer = trace.Tracer(internal=False)
    tracer.start()
    try:
        assert set(tracer.modes.values()) == {"exported"}
        captured = Captured(tracer)
        pid, _ = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        assert len(captured.wait_for(lambda ex: ex.pid == pid, count=2)) == 2
        curl = shutil.which("curl")
        assert curl is not None
        pid, out = run_client([
            curl, "-sS", "-k", "--http1.1", "--resolve",
            f"api.openai.com:{tls_server.port}:127.0.0.1",
            f"https://api.openai.com:{tls_server.port}/v1/chat/completions",
            "-H", "content-type: application/json", "--data-binary", '{"model":"gpt-4o"}'])
        [ex] = captured.wait_for(lambda ex: ex.pid == pid)
        assert (ex.comm, ex.sni, ex.path, ex.status) == (
            "curl", "api.openai.com", "/v1/chat/completions", 200)
        assert ex.request_body == b'{"model":"gpt-4o"}' and ex.response_body == out.encode()
    finally:
        tracer.stop()


def test_reader_failure_detaches_and_a_restart_captures(capture_ready: None,
                                                        tls_server: Server) -> None:
    before = perf_fds()
    tracer = trace.Tracer()
    tracer.start()
    try:
        assert tracer.running and perf_fds() > before
        captured = Captured(tracer)
        pid, _ = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        assert len(captured.wait_for(lambda ex: ex.pid == pid, count=2)) == 2

        def broken(records: list[bytes]) -> None:
            if records:
                raise RuntimeError("a bug in the reader")
        tracer._records = broken  # type: ignore[method-assign]
        run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        deadline = time.monotonic() + WAIT_S
        while tracer.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tracer.running
        assert perf_fds() == before                  # the failed reader detached the probes
        del tracer._records
        tracer.start()
        assert tracer.running and tracer.stats()["restarts"] == 1
        pid, _ = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        assert len(captured.wait_for(lambda ex: ex.pid == pid, count=2)) == 2
    finally:
        tracer.stop()
    assert not tracer.running and perf_fds() == before


def test_start_failure_names_the_reason(capture_ready: None, tmp_path: Path) -> None:
    before = perf_fds()
    built = (r"is not built: install clang and libbpf-dev, then reinstall the agent "
             r"\(in a checkout: make bpf\)")
    with pytest.raises(trace.TracerUnavailable, match=built):
        trace.Tracer(obj_path=tmp_path / "capture.bpf.o").start()
    damaged = tmp_path / "damaged.bpf.o"
    damaged.write_bytes(b"\x7fELF" + b"\0" * 60)
    with pytest.raises(trace.TracerUnavailable, match=r"libbpf could not open damaged\.bpf\.o"):
        trace.Tracer(obj_path=damaged).start()
    not_ssl = shutil.which("curl")
    assert not_ssl is not None
    with pytest.raises(trace.TracerUnavailable, match="not an OpenSSL 3 libssl"):
        trace.Tracer(libssl=[not_ssl]).start()
    assert perf_fds() == before               # nothing stays attached after a failed start


UNPRIVILEGED_CAPTURE = r"""
import ctypes, http.client, json, ssl, sys, time
# write-xor-execute, as the unit's MemoryDenyWriteExecute=yes: ctypes' callbacks must still work
assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0          # PR_SET_MDWE, REFUSE_EXEC_GAIN
from collectors.llm_traffic import trace
reason = trace.unavailable_reason()
if reason:
    print(json.dumps({"reason": reason})); sys.exit(0)
tracer = trace.Tracer(); tracer.start()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
conn.request("POST", "/v1/chat/completions", b'{"model":"gpt-4o-mini"}',
              {"Host": "api.openai.com", "Content-Type": "application/json"})
status = conn.getresponse().status
conn.close()
found = []
for _ in range(100):
    found += tracer.drain()
    if found:
        break
    time.sleep(0.2)
tracer.stop()
print(json.dumps({"status": status, "paths": [ex.path for ex in found],
                  "hosts": [ex.host for ex in found]}))
"""


def test_privileges_uid0_with_cap_bpf_and_cap_perfmon_suffices(capture_ready: None,
                                                               tls_server: Server) -> None:
    """Without CAP_SYS_ADMIN the uprobes go through tracefs (bpf.py): uid 0 bounded to CAP_BPF and
    CAP_PERFMON captures, as the unit's drop-in runs it, and leaves no uprobe event behind; any
    other user is told exactly what is missing."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}

    def run(*setpriv: str) -> dict[str, Any]:
        done = subprocess.run(["setpriv", *setpriv, PYTHON, "-c", UNPRIVILEGED_CAPTURE,
                               str(tls_server.port)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    reason = run(*nobody, "--inh-caps=-all")["reason"]
    assert "CAP_BPF" in reason and "CAP_PERFMON" in reason and "deploy/llm-traffic.conf" in reason
    caps = "-all,+bpf,+perfmon"
    reason = run(*nobody, f"--inh-caps={caps}", f"--ambient-caps={caps}")["reason"]
    assert "only uid 0 may write" in reason and "deploy/llm-traffic.conf" in reason
    bounded = [f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}"]
    assert run(*bounded) == {"status": 200, "paths": ["/v1/chat/completions"],
                             "hosts": ["api.openai.com"]}
    with open(f"{bpf.TRACEFS}/uprobe_events", encoding="ascii") as fh:
        assert f"{bpf.EVENT_GROUP}/" not in fh.read()
    assert trace.unavailable_reason(libssl=["/nonexistent/libssl.so.3"]) is not None


def test_stale_tracefs_events_are_removed(capture_ready: None) -> None:
    """A killed agent's uprobe events (defined in tracefs) are removed by the next start; a
    running agent's are left alone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    lib = trace.find_libssl()[0]
    off = bpf.plan(lib)[0][0].offset
    dead, alive = f"p{gone.pid}_0", f"p{os.getpid()}_9"
    for name in (dead, alive):
        bpf._define(f"p:{bpf.EVENT_GROUP}/{name} {lib}:{off:#x}")
    try:
        assert bpf.remove_stale_events() >= 1     # this one, and any other dead agent's
        with open(f"{bpf.TRACEFS}/uprobe_events", encoding="ascii") as fh:
            text = fh.read()
        assert f"/{dead} " not in text and f"/{alive} " in text
    finally:
        bpf._remove_event(alive)
        bpf._remove_event(dead)


# ---------------------------------------------------------------------------------------------
# pure parts of trace.py and bpf.py (run anywhere)

def test_container_ids() -> None:
    hexid = "0123456789abcdef" * 4
    for text in (f"0::/system.slice/docker-{hexid}.scope\n",
                 f"0::/machine.slice/libpod-{hexid}.scope/container\n",
                 f"12:pids:/docker/{hexid}\n",
                 f"0::/kubepods/burstable/pod1234-5678/{hexid}\n",
                 f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{hexid}.scope\n",
                 f"0::/kubepods.slice/kubepods-besteffort.slice/crio-{hexid}.scope\n"):
        assert trace.container_id(text) == hexid[:12], text
    assert trace.container_id("0::/user.slice/user-1000.slice/session-2.scope\n") == ""


def test_internal_callee_reads_the_wrapper_prologue() -> None:
    call = b"\xe8" + (0x100).to_bytes(4, "little", signed=True)
    assert bpf.internal_callee(b"\x48\x83\xec\x08" + call, 0x1000) == 0x1000 + 9 + 0x100
    assert bpf.internal_callee(b"\xf3\x0f\x1e\xfa\x48\x83\xec\x18" + call, 0x1000) == 0x1000 + 13 + 0x100
    back = b"\xe9" + (-0x40).to_bytes(4, "little", signed=True)      # a tail call backwards
    assert bpf.internal_callee(back, 0x2000) == 0x2000 + 5 - 0x40
    assert bpf.internal_callee(b"\x55\x48\x89\xe5" + call, 0x1000) is None   # push rbp first
    assert bpf.internal_callee(b"\x48\x83\xec", 0) is None


def test_plan_on_this_machines_libssl() -> None:
    [lib] = trace.find_libssl()[:1]
    probes, mode = bpf.plan(lib)
    assert mode == "internal"                 # Debian 12's OpenSSL 3.0 on x86-64
    by = {(p.program, p.retprobe): p for p in probes}
    assert by[("sni", False)].symbol == "SSL_ctrl" and by[("on_free", False)].symbol == "SSL_free"
    symbols = {p.symbol for p in probes if p.program in ("enter_ex", "leave_write", "leave_read")}
    assert symbols == {"ssl_write_internal", "ssl_read_internal"}
    with open(lib, "rb") as fh:
        for p in probes:                      # every probe sits on a push (emulated) or is named
            fh.seek(p.offset)
            first = fh.read(2)
            if p.symbol.startswith("ssl_"):
                assert first[0] in range(0x50, 0x58) or (first[0] == 0x41 and first[1] in range(0x50, 0x58))
    probes, mode = bpf.plan(lib, internal=False)
    assert mode == "exported"
    assert {p.symbol for p in probes} == {*bpf.READ_WRITE, *bpf.OTHER}


def test_plan_falls_back_to_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = trace.find_libssl()[0]
    syms, code, x86 = libssl._symbols(lib)
    # OpenSSL 3.2+ (SSL_write_ex2: the internal write takes a flags argument): exported
    monkeypatch.setattr(libssl, "_symbols", lambda path: ({**syms, "SSL_write_ex2": 1}, code, x86))
    assert bpf.plan(lib)[1] == "exported"
    # a callee that does not begin with a push (it would be single-stepped anyway): exported
    wrapper = b"\x48\x83\xec\x08" + b"\xe8\0\0\0\0"
    monkeypatch.setattr(libssl, "_symbols", lambda path: (
        syms, lambda off: wrapper if off in syms.values() else b"\x8b\x07", x86))
    assert bpf.plan(lib)[1] == "exported"
    monkeypatch.setattr(libssl, "_symbols", lambda path: (syms, code, False))          # not x86-64
    assert bpf.plan(lib)[1] == "exported"
    monkeypatch.setattr(libssl, "_symbols", lambda path: ({k: v for k, v in syms.items()
                                                         if k != "SSL_read_ex"}, code, x86))
    with pytest.raises(bpf.BpfUnavailable, match="has no SSL_read_ex"):
        bpf.plan(lib)


def record(kind: int, ssl: int, data: bytes = b"", *, ts: int, pos: int = 0, total: int = -1,
           side: int = 0, skip: int = 0, pid: int = 777, comm: bytes = b"python3") -> bytes:
    """A ring-buffer record as capture.bpf.c writes it."""
    return bpf.HEADER.pack(ts, ssl, pos, len(data) if total < 0 else total, pid, len(data), kind,
                           side, skip, comm) + data


def test_records_make_exchanges() -> None:
    """The reader's path without the kernel: records as capture.bpf.c writes them, with a server
    side, a connection that is no HTTP, a call kept short, lost calls and a damaged record."""
    tracer = trace.Tracer(capture_bytes=16384)
    t0 = time.monotonic_ns()
    body = b'{"model":"gpt-4o","messages":[]}' + b"x" * 400
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
           b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    resp = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'
    D, S, F, IGN = bpf.K_DATA, bpf.K_SNI, bpf.K_FREE, bpf.K_IGNORE
    tracer._records([
        record(S, 0xABC, b"api.openai.com", ts=t0 + 1),
        record(D, 0xABC, req, ts=t0 + 20),
        record(D, 0xABC, resp, ts=t0 + 30, side=1),
        record(IGN, 0xDEF, ts=t0 + 40, skip=2),                 # a server's connection
        record(IGN, 0xEE0, ts=t0 + 45, skip=1),                 # not HTTP
        record(F, 0xABC, ts=t0 + 50), record(F, 0xDEF, ts=t0 + 51), record(F, 0xEE0, ts=t0 + 52),
        b"\x01\x02",                                           # too short for its header
    ])
    [ex] = tracer.drain()
    assert (ex.pid, ex.comm, ex.sni, ex.path, ex.status) == (
        777, "python3", "api.openai.com", "/v1/chat/completions", 200)
    assert ex.request_body == body and ex.response_body == b"{}"
    assert TOKEN not in repr(ex)
    stats = tracer.stats()
    assert stats["unparsed"] == 1 and stats["server_connections"] == 1
    assert stats["other_connections"] == 1 and stats["events"] == 8
    # a call kept short (capture_bytes): the rest of the body is counted, not kept
    tracer._records([record(D, 0xAAA, req[:len(req) - 100], total=len(req), ts=t0 + 60),
                     record(D, 0xAAA, resp, ts=t0 + 70, side=1)])
    [ex] = tracer.drain()
    assert ex.request_truncated and ex.request_bytes == len(req) and ex.status == 200
    assert body.startswith(ex.request_body) and len(ex.request_body) == len(body) - 100
    # a whole call lost (a full ring): its bytes show as a jump of position; inside a body they
    # are skipped, and the next request on the connection still parses
    second = req.replace(b"/v1/chat/completions", b"/v1/responses")
    a, b = len(second) - 300, len(second) - 100          # the call with bytes a..b is lost
    tracer._records([record(D, 0xAAA, second[:a], pos=len(req), ts=t0 + 90),
                     record(D, 0xAAA, second[b:], pos=len(req) + b, ts=t0 + 91),
                     record(D, 0xAAA, resp, pos=len(resp), side=1, ts=t0 + 92),
                     record(D, 0xAAA, req, pos=len(req) + len(second), ts=t0 + 93),
                     record(D, 0xAAA, resp, pos=2 * len(resp), side=1, ts=t0 + 94)])
    lost, after = tracer.drain()
    assert lost.path == "/v1/responses" and lost.request_truncated and lost.status == 200
    assert lost.request_bytes == len(second) and lost.request_body == second[len(second) - len(body):a]
    assert after.path == "/v1/chat/completions" and after.request_body == body
    # a call behind its connection's position cannot be placed: counted, the connection is out
    # of sync; the same SSL pointer at position 0 again is a new connection (SSL_free unseen)
    tracer._records([record(D, 0xAAA, req[:50], pos=10, ts=t0 + 95)])
    assert tracer.stats()["late_events"] == 1 and tracer.stats()["out_of_sync"] >= 1
    tracer._records([record(D, 0xAAA, req, ts=t0 + 96), record(D, 0xAAA, resp, side=1, ts=t0 + 97)])
    [again] = [e for e in tracer.drain() if e.status == 200]
    assert again.request_body == body and again.comm == "python3"


def test_check_and_the_collector_say_how_the_probes_attach(capture_ready: None, tls_server: Server,
                                                           make_settings: Any) -> None:
    """`check` names each libssl and its mode; the collector, enabled, attaches, reports what a
    client sent through its cycle summary and says where it attached; stop() detaches."""
    from agent.check import check_llm_traffic
    from collectors.llm_traffic import collector
    from foundation.context import CollectContext

    settings = make_settings(COLLECTORS=["llm_traffic"])
    outcome = check_llm_traffic(settings)
    assert outcome.ok, outcome
    assert f"{trace.find_libssl()[0]} (internal functions)" in outcome.detail
    before = perf_fds()
    try:
        first = collector.collect(CollectContext(settings, time.time(), {}))
        assert first.available
        assert first.observations["attached"] == dict.fromkeys(trace.find_libssl(), "internal")
        pid, _ = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        requests = 0
        deadline = time.monotonic() + WAIT_S
        while requests < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            obs = collector.collect(CollectContext(settings, time.time(), {})).observations
            requests += sum(row["requests"] for row in obs["clients"] if pid in row["pids"])
            assert TOKEN not in json.dumps(obs)
        assert requests == 2
    finally:
        collector.stop()
    assert perf_fds() == before
