"""llm_traffic's capture (collectors/llm_traffic/trace.py) with REAL eBPF: bpftrace's uprobes on
this machine's OpenSSL 3, a loopback TLS server speaking HTTP/1.1 and HTTP/2, and real clients
(Python's ssl + http.client, curl, httpx over HTTP/2) as separate processes. Root only: the CI
runs these as root, and without the capabilities they fail with the reason (never skip).

All traffic goes to 127.0.0.1. Every process started here is stopped by its own pid. The tests
poll drain() (up to WAIT_S) and never assert timings: they must pass on a loaded 2-core machine.
The server answers after DELAY_S so that short-lived clients (curl) are still alive when the
tracer reads their /proc/PID/exe (a known limitation: see trace.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collectors.llm_traffic import trace
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

def test_tracer_survives_its_bpftrace_being_killed(capture_ready: None, tls_server: Server) -> None:
    tracer = trace.Tracer()
    tracer.start()
    try:
        assert tracer.running and tracer.pid is not None
        pid, _ = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        time.sleep(1.0)                          # the lines are in the pipe or the tracer
        os.kill(tracer.pid, signal.SIGKILL)      # bpftrace, started by this tracer: by its pid
        deadline = time.monotonic() + WAIT_S
        while tracer.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tracer.running
        captured = Captured(tracer)
        assert len(captured.wait_for(lambda ex: ex.pid == pid, count=2)) == 2
        tracer.start()                           # a new bpftrace
        assert tracer.running
        assert tracer.stats()["restarts"] == 1
        pid, _ = run_client([PYTHON, "-c", PY_CLIENT, str(tls_server.port), TOKEN])
        assert len(captured.wait_for(lambda ex: ex.pid == pid, count=2)) == 2
    finally:
        tracer.stop()
    assert not tracer.running and tracer.pid is None


def test_start_failure_names_bpftrace_error(capture_ready: None, tmp_path: Path) -> None:
    fake = tmp_path / "bpftrace"
    fake.write_text("#!/bin/sh\necho \"ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK\" >&2\n"
                    "echo 'stdin:1:1-10: ERROR: something went wrong here' >&2\nexit 1\n")
    fake.chmod(0o755)
    tracer = trace.Tracer(bpftrace=str(fake))
    with pytest.raises(trace.TracerUnavailable, match="something went wrong here"):
        tracer.start()
    assert not tracer.running


def test_unavailable_reason_unprivileged_names_the_capabilities(capture_ready: None) -> None:
    code = ("from collectors.llm_traffic.trace import unavailable_reason; "
            "print(unavailable_reason())")
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    reason = done.stdout.strip()
    assert "CAP_BPF" in reason and "CAP_PERFMON" in reason
    assert "deploy/llm-traffic.conf" in reason
    # with the capabilities but not uid 0: bpftrace 0.17 would refuse, and the reason says so
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon", PYTHON, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "runs only as root" in done.stdout and "deploy/llm-traffic.conf" in done.stdout
    assert trace.unavailable_reason(libssl=["/nonexistent/libssl.so.3"]) is not None
    assert "apt install bpftrace" in (trace.unavailable_reason("no-such-bpftrace-here") or "")


# ---------------------------------------------------------------------------------------------
# pure parts of trace.py (run anywhere)

def test_unescape_and_its_backslash_ambiguity() -> None:
    assert trace.unescape(b"GET / HTTP/1.1\\x0d\\x0a", 16) == b"GET / HTTP/1.1\r\n"
    assert trace.unescape(b"\\x00\\xff", 2) == b"\x00\xff"
    # a literal backslash followed by x0a (4 bytes) next to a real newline escape
    assert trace.unescape(b"a\\x0a\\x0ab", 7) == b"a\\x0a\nb"
    assert trace.unescape(b"\\x41", 4) == b"\\x41"           # a printable byte is never escaped
    assert trace.unescape(b"abc", 4) is None and trace.unescape(b"abc", 3) == b"abc"


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


def test_program_text() -> None:
    text = trace.program(["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/opt/libssl.so.3"], 16384)
    for probe in ("uprobe:/opt/libssl.so.3:SSL_write_ex", "uretprobe:/opt/libssl.so.3:SSL_read",
                  "uprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3:SSL_ctrl", "SSL_free"):
        assert probe in text
    assert f"while ($i < {16384 // trace.CHUNK + 1})" in text
    assert "READY" in text and "clear(@a)" in text


def test_recorded_lines_make_exchanges() -> None:
    """The reader's path without bpftrace: lines as bpftrace prints them, out of order, with a
    chunk missing, a server-side connection and a Lost line."""
    tracer = trace.Tracer(capture_bytes=16384)
    t0 = time.monotonic_ns()
    body = b'{"model":"gpt-4o","messages":[]}' + b"x" * 400
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
           b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    resp = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'

    def lines(letter: str, ts: int, ssl: str, data: bytes, pos: int = 0) -> list[bytes]:
        """One call's chunks as bpftrace prints its map (in no particular order)."""
        out = []
        for off in range(0, len(data), trace.CHUNK):
            chunk = data[off:off + trace.CHUNK]
            text = b"".join(bytes([c]) if 32 <= c < 127 else b"\\x%02x" % c for c in chunk)
            out.append(b"@d%d[777, %d, %d, %d, %d, %d, %d]: %s" % (
                ts % 2, int(ssl, 16), letter == "R", pos, off, ts, len(data), text))
        return out[::-1]

    recorded = [b"Attaching 9 probes...", b"READY",
                b"S %d 777 abc python\\x00\\x00 api.openai.com\\x00" % (t0 + 1),
                *lines("R", t0 + 30, "abc", resp),           # printed before the request
                b"C %d 777 abc python3\\x00" % (t0 + 2),
                *lines("W", t0 + 20, "abc", req),
                *lines("R", t0 + 40, "def", req),             # a server's connection
                b"I %d 777 ee0 1" % (t0 + 45),               # bpftrace ignores it: not HTTP
                b"F %d 777 abc" % (t0 + 50), b"F %d 777 def" % (t0 + 51),
                b"F %d 777 ee0" % (t0 + 52), b"T %d" % (t0 + 60), b"", b"garbage line"]
    tracer._lines(recorded)
    tracer._release(None)
    [ex] = tracer.drain()
    assert (ex.pid, ex.comm, ex.sni, ex.path, ex.status) == (
        777, "python3", "api.openai.com", "/v1/chat/completions", 200)
    assert ex.request_body == body and ex.response_body == b"{}"
    assert TOKEN not in repr(ex)
    stats = tracer.stats()
    assert stats["unparsed"] == 1 and stats["server_connections"] == 1
    assert stats["other_connections"] == 1
    # the same request with its second chunk lost: a gap inside the body, skipped
    chunks = lines("W", t0 + 60, "aaa", req)
    tracer._lines([chunks[0], *chunks[2:], *lines("R", t0 + 70, "aaa", resp)])
    tracer._release(None)
    [ex] = tracer.drain()
    assert ex.request_truncated and ex.request_bytes == len(req) and ex.status == 200
    assert body.startswith(ex.request_body) and len(ex.request_body) < len(body)
    # then a whole call lost (bpftrace's "Lost N events"): its bytes show as a jump of position;
    # inside a body they are skipped, and the next request on the connection still parses
    second = req.replace(b"/v1/chat/completions", b"/v1/responses")
    a, b = len(second) - 300, len(second) - 100          # the call with bytes a..b is lost
    tracer._lines([b"Lost 3 events", *lines("W", t0 + 90, "aaa", second[:a], pos=len(req)),
                   *lines("W", t0 + 91, "aaa", second[b:], pos=len(req) + b),
                   *lines("R", t0 + 92, "aaa", resp, pos=len(resp)),
                   *lines("W", t0 + 93, "aaa", req, pos=len(req) + len(second)),
                   *lines("R", t0 + 94, "aaa", resp, pos=2 * len(resp))])
    tracer._release(None)
    assert tracer.stats()["lost_events"] == 3
    lost, after = tracer.drain()
    assert lost.path == "/v1/responses" and lost.request_truncated and lost.status == 200
    assert lost.request_bytes == len(second) and lost.request_body == second[len(second) - len(body):a]
    assert after.path == "/v1/chat/completions" and after.request_body == body

