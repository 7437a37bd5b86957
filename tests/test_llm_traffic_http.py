"""llm_traffic's HTTP parsing (collectors/llm_traffic/http.py) on byte streams: HTTP/1.1 framing,
keep-alive, SSE, truncation and missing parts; HTTP/2 made by the real h2 library; redaction; and
that a stream split anywhere parses as when fed whole."""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import h2.config
import h2.connection
import h2.events
from hypothesis import example, given, settings
from hypothesis import strategies as st

from collectors.llm_traffic.exchange import Exchange
from collectors.llm_traffic.http import (
    CLIENT,
    H2_PREFACE,
    OTHER,
    SERVER,
    ConnMeta,
    HttpConnection,
    header_dict,
    starts_request,
)

Events = list[tuple[str, bytes]]          # ("w", bytes the client wrote) / ("r", bytes it read)

SECRET = "sk-proj-DoNotLeakThis0123456789abcdef"
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def meta() -> ConnMeta:
    return ConnMeta(pid=4242, comm="agent", exe="/usr/bin/agent", container="0123456789ab",
                    sni="api.openai.com")


def run(events: Events, cap: int = 16384, close: bool = True) -> tuple[list[Exchange],
                                                                       HttpConnection]:
    conn = HttpConnection(meta(), cap)
    for i, (direction, data) in enumerate(events):
        if direction == "w":
            conn.wrote(data, ts=1000.0 + i)
        else:
            conn.read(data, ts=1000.0 + i)
    out = conn.take()
    if close:
        conn.close(2000.0)
        out += conn.take()
    return out, conn


def request(body: bytes, path: str = "/v1/chat/completions", host: str = "api.openai.com",
            extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {SECRET}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def response(body: bytes, status: str = "200 OK", ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def chunked(body: bytes, size: int) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def openai_body(n: int = 0) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "hello " + "x" * n}]}).encode()


def openai_answer() -> bytes:
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion",
                       "choices": [{"message": {"role": "assistant", "content": "hi"}}],
                       "usage": USAGE}).encode()


def comparable(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(ex).items() if k not in ("started_at", "ended_at")}
            for ex in exchanges]


# ---------------------------------------------------------------------------------------------
# HTTP/1.1

def test_content_length_request_and_response() -> None:
    req, resp = request(openai_body()), response(openai_answer())
    out, conn = run([("w", req), ("r", resp)], close=False)
    assert conn.role == CLIENT and conn.version == "1.1"
    [ex] = out
    assert (ex.pid, ex.comm, ex.exe, ex.container, ex.sni) == (
        4242, "agent", "/usr/bin/agent", "0123456789ab", "api.openai.com")
    assert (ex.http_version, ex.method, ex.path, ex.authority) == (
        "1.1", "POST", "/v1/chat/completions", "api.openai.com")
    assert ex.host == "api.openai.com"
    assert ex.request_body == openai_body() and not ex.request_truncated
    assert ex.request_headers["content-type"] == "application/json"
    assert ex.status == 200 and ex.response_body == openai_answer()
    assert json.loads(ex.response_body)["usage"] == USAGE
    assert ex.response_headers["content-length"] == str(len(openai_answer()))
    assert (ex.request_bytes, ex.response_bytes) == (len(req), len(resp))
    assert ex.started_at == 1000.0 and ex.ended_at == 1001.0


def test_chunked_request_and_response_are_dechunked() -> None:
    body = openai_body(500)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    req = head + chunked(body, 100)
    answer = openai_answer()
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked(answer, 7))
    [ex], _ = run([("w", req), ("r", resp)])
    assert ex.request_body == body and not ex.request_truncated
    assert ex.response_body == answer and not ex.response_truncated
    assert (ex.request_bytes, ex.response_bytes) == (len(req), len(resp))
    assert ex.ended_at is not None


def test_chunk_extensions_and_trailers() -> None:
    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"4;name=value\r\nabcd\r\n0\r\nX-Trailer: 1\r\n\r\n")
    [ex], _ = run([("w", request(b"{}")), ("r", resp)])
    assert ex.response_body == b"abcd" and ex.response_bytes == len(resp)


def test_keep_alive_two_requests_paired_in_order() -> None:
    r1, r2 = request(openai_body(1)), request(b'{"second": true}', path="/v1/embeddings")
    a1, a2 = response(b'{"n": 1}'), response(b'{"n": 2}', status="429 Too Many Requests")
    out, _ = run([("w", r1), ("r", a1), ("w", r2), ("r", a2)])
    assert [(ex.path, ex.status, ex.response_body) for ex in out] == [
        ("/v1/chat/completions", 200, b'{"n": 1}'), ("/v1/embeddings", 429, b'{"n": 2}')]
    assert [ex.request_bytes for ex in out] == [len(r1), len(r2)]


def test_pipelined_requests_tolerated() -> None:
    r1, r2 = request(b"1"), request(b"22", path="/v1/models")
    out, _ = run([("w", r1 + r2), ("r", response(b"a") + response(b"bb"))])
    assert [(ex.path, ex.request_body, ex.response_body) for ex in out] == [
        ("/v1/chat/completions", b"1", b"a"), ("/v1/models", b"22", b"bb")]


def test_sse_response_chunked_and_until_close() -> None:
    events = (b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
              b'data: {"choices":[],"usage":' + json.dumps(USAGE).encode() + b'}\n\n'
              b"data: [DONE]\n\n")
    sse = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + chunked(events, 30))
    [ex], _ = run([("w", request(b'{"stream": true}')), ("r", sse)], close=False)
    assert ex.response_headers["content-type"] == "text/event-stream"
    assert ex.response_body == events and ex.response_bytes == len(sse)
    # no length and no chunking: the body ends with the connection
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    pieces = [("r", head)] + [("r", events[i:i + 10]) for i in range(0, len(events), 10)]
    out, conn = run([("w", request(b"{}")), *pieces], close=False)
    assert out == []                                    # not complete before the close
    conn.close(3000.0)
    [ex] = conn.take()
    assert ex.response_body == events and not ex.response_truncated
    assert ex.response_bytes == len(head) + len(events) and ex.ended_at is not None


def test_body_larger_than_capture_is_cut_sizes_full() -> None:
    body = openai_body(5000)
    answer = b'{"usage": {"prompt_tokens": 1}, "pad": "' + b"y" * 3000 + b'"}'
    req, resp = request(body), response(answer)
    [ex], _ = run([("w", req), ("r", resp)], cap=1024)
    assert ex.request_body == body[:1024] and ex.request_truncated
    assert ex.response_body == answer[:1024] and ex.response_truncated
    assert (ex.request_bytes, ex.response_bytes) == (len(req), len(resp))


def test_missing_middle_of_a_body_is_skipped_framing_kept() -> None:
    body = b"A" * 3000 + b"B" * 4000 + b"C" * 1000
    req = request(body)
    head = len(req) - len(body)
    conn = HttpConnection(meta(), 16384)
    conn.wrote(req[:head + 3000], missing=4000, ts=1.0)     # the call moved 4000 more bytes
    conn.wrote(req[head + 7000:], ts=2.0)
    conn.read(response(b"{}"), ts=3.0)
    conn.wrote(request(b"next"), ts=4.0)                     # the connection is still in sync
    conn.read(response(b"ok"), ts=5.0)
    first, second = conn.take()
    assert first.request_body == b"A" * 3000 and first.request_truncated   # a prefix only
    assert first.request_bytes == len(req) and first.status == 200
    assert second.request_body == b"next" and second.response_body == b"ok"
    assert not conn.out_of_sync


def test_missing_bytes_in_a_header_lose_sync() -> None:
    conn = HttpConnection(meta(), 16384)
    first = request(b"1")
    conn.wrote(first, ts=1.0)
    conn.wrote(b"POST /v1/chat/completions HTTP/1.1\r\nHo", missing=50, ts=2.0)
    assert conn.out_of_sync
    [alone] = conn.take()                                   # the first request, reported alone
    assert alone.request_body == b"1" and alone.status is None
    conn.read(response(b"late"), ts=3.0)
    conn.wrote(request(b"more"), ts=4.0)
    conn.close(5.0)
    assert conn.take() == []
    assert conn.bytes_written == len(first) + 38 + 50 + len(request(b"more"))


def test_http1_finds_its_footing_again_at_the_next_request() -> None:
    conn = HttpConnection(meta(), 16384)
    conn.wrote(request(b"1"), ts=1.0, boundary=True)
    conn.read(b"HTTP/1.1 200 OK\r\nContent-Le", missing=500, ts=2.0, boundary=True)
    assert conn.out_of_sync
    [alone] = conn.take()
    assert alone.request_body == b"1" and alone.status is None
    conn.read(b'ngth: 2\r\n\r\n{}', ts=2.5)                 # the rest of that response
    conn.wrote(b"tail of something", ts=2.6, boundary=True)    # not a request: still lost
    assert conn.out_of_sync
    conn.wrote(request(b"again"), ts=3.0, boundary=True)
    assert not conn.out_of_sync and conn.resyncs == 1
    conn.read(b'"late": 1}', ts=3.1)                         # not at a call's start: ignored
    conn.read(response(b"ok"), ts=3.5, boundary=True)
    [ex] = conn.take()
    assert (ex.request_body, ex.status, ex.response_body) == (b"again", 200, b"ok")


def test_missing_bytes_past_a_chunk_lose_sync_and_report_partial() -> None:
    conn = HttpConnection(meta(), 16384)
    conn.wrote(request(b"{}"), ts=1.0)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.read(head + b"10\r\n0123", missing=100, ts=2.0)   # past the chunk's 16 bytes
    [ex] = conn.take()
    assert conn.out_of_sync and ex.status == 200
    assert ex.response_body == b"0123" and ex.response_truncated


def test_head_204_304_and_100_continue_have_no_body() -> None:
    head_req = b"HEAD /v1/models HTTP/1.1\r\nHost: api.openai.com\r\n\r\n"
    head_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    empty = b"HTTP/1.1 204 No Content\r\n\r\n"
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    out, _ = run([("w", head_req), ("r", head_resp), ("w", request(b"x", extra="Expect: 100-continue\r\n")),
                  ("r", cont + empty)])
    assert [(ex.method, ex.status, ex.response_body) for ex in out] == [
        ("HEAD", 200, b""), ("POST", 204, b"")]
    assert out[1].response_bytes == len(cont) + len(empty)


def test_upgrade_stops_parsing() -> None:
    ws = (b"GET /v1/realtime HTTP/1.1\r\nHost: api.openai.com\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\n\r\n")
    out, _ = run([("w", ws), ("r", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
                  ("w", b"\x81\x85binary-websocket-frame"), ("r", b"\x81\x02hi")])
    [ex] = out
    assert ex.status == 101 and ex.path == "/v1/realtime"


def test_roles_server_and_other_protocols_are_ignored() -> None:
    out, conn = run([("r", request(b"{}")), ("w", response(b"{}"))])
    assert conn.role == SERVER and out == []
    out, conn = run([("w", b"EHLO mail.example.org\r\n"), ("r", b"250 ok\r\n")])
    assert conn.role == OTHER and out == []
    out, conn = run([("w", b"\x16\x03\x01binary")])
    assert conn.role == OTHER
    # a response read before anything was written (the capture began mid-connection) is dropped
    out, conn = run([("r", b'sage": 1}'), ("w", request(b"{}")), ("r", response(b"{}"))])
    assert conn.role == CLIENT and [ex.response_body for ex in out] == [b"{}"]
    assert starts_request(b"PO") == "more" and starts_request(b"PRI * HT") == "more"
    assert starts_request(b"post / HTTP/1.1\r\n") == ""
    line = b"DELETE /v1/files/file-1?x=1 HTTP/1.1\r\n"
    assert [starts_request(line[:i]) for i in range(1, len(line))] == ["more"] * (len(line) - 1)
    assert starts_request(line) == "1.1"
    assert {starts_request(H2_PREFACE[:i]) for i in range(1, 24)} == {"more"}


def test_request_without_response_expires_and_its_late_answer_is_counted() -> None:
    conn = HttpConnection(meta(), 16384)
    conn.wrote(request(b"slow"), ts=100.0)
    conn.expire(now=130.0, max_age=60.0)
    assert conn.take() == []
    conn.expire(now=161.0, max_age=60.0)
    [alone] = conn.take()
    assert alone.status is None and alone.request_body == b"slow" and alone.ended_at is None
    conn.read(response(b"finally"), ts=170.0)
    conn.wrote(request(b"next"), ts=171.0)
    conn.read(response(b"ok"), ts=172.0)
    [ex] = conn.take()
    assert (ex.request_body, ex.response_body) == (b"next", b"ok") and conn.late == 1


def test_close_reports_requests_alone() -> None:
    out, _ = run([("w", request(b"a")), ("w", request(b"b"))])
    assert [(ex.request_body, ex.status) for ex in out] == [(b"a", None), (b"b", None)]


def test_redaction_http1() -> None:
    extra = (f"x-api-key: {SECRET}\r\nCookie: session={SECRET}\r\napi-key: {SECRET}\r\n"
             f"X-Goog-Api-Key: {SECRET}\r\nProxy-Authorization: Basic {SECRET}\r\n")
    [ex], _ = run([("w", request(b"{}", extra=extra)), ("r", response(b"{}"))])
    for name in ("authorization", "x-api-key", "cookie", "api-key", "x-goog-api-key",
                 "proxy-authorization"):
        assert ex.request_headers[name] == "<redacted>"
    assert SECRET not in repr(ex)
    assert header_dict([(b"Authorization", b"a"), (b"authorization", b"b")]) == {
        "authorization": "<redacted>"}


# ---------------------------------------------------------------------------------------------
# HTTP/2, made by the h2 library

class H2Pair:
    """An h2 client and server talking in memory; ``events`` is what the client wrote and read."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.events: Events = []
        self.received: dict[int, bytes] = {}
        self.client.initiate_connection()
        self.flush_client()
        self.server.initiate_connection()
        self.flush_server()
        self.flush_client()

    def flush_client(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.events.append(("w", data))
            for event in self.server.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.received[event.stream_id] = self.received.get(event.stream_id, b"") + \
                        event.data
                    self.server.acknowledge_received_data(event.flow_controlled_length,
                                                          event.stream_id)
            self.flush_server()

    def flush_server(self) -> None:
        data = self.server.data_to_send()
        if data:
            self.events.append(("r", data))
            for event in self.client.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.client.acknowledge_received_data(event.flow_controlled_length,
                                                          event.stream_id)
            data = self.client.data_to_send()
            if data:
                self.events.append(("w", data))
                self.server.receive_data(data)


def req_headers(path: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":path", path), (":scheme", "https"),
            (":authority", "api.openai.com"), ("content-type", "application/json"),
            ("authorization", f"Bearer {SECRET}"), *(extra or [])]


def h2_session(big_header: bool = True) -> tuple[Events, dict[int, bytes]]:
    """Two concurrent streams, a large response in several DATA frames, a large header block in
    HEADERS + CONTINUATION (``big_header``: beyond a 16 KiB capture's header limit)."""
    p = H2Pair()
    big = "v" * (20000 if big_header else 100)
    body1, body3 = openai_body(10), openai_body(20)
    p.client.send_headers(1, req_headers("/v1/chat/completions"))
    p.client.send_headers(3, req_headers("/v1/embeddings", [("x-big", big)]))
    p.client.send_data(1, body1[:30])
    p.client.send_data(3, body3, end_stream=True)
    p.client.send_data(1, body1[30:], end_stream=True)
    p.flush_client()
    large = b"L" * 40000
    p.server.send_headers(3, [(":status", "200"), ("content-type", "application/json")])
    p.server.send_headers(1, [(":status", "200"), ("content-type", "text/event-stream")])
    p.server.send_data(3, large[:16000])
    p.server.send_data(1, b"data: one\n\n", pad_length=5)
    p.server.send_data(3, large[16000:32000])
    p.server.send_data(3, large[32000:], end_stream=True)
    p.server.send_data(1, b"data: [DONE]\n\n", end_stream=True)
    p.flush_server()
    return p.events, {1: body1, 3: body3, 0: large}


def test_h2_two_streams_large_data_and_continuation() -> None:
    events, bodies = h2_session()
    out, conn = run(events, cap=65536, close=False)
    assert conn.version == "2" and not conn.out_of_sync
    by_path = {ex.path: ex for ex in out}
    assert set(by_path) == {"/v1/chat/completions", "/v1/embeddings"}
    chat, emb = by_path["/v1/chat/completions"], by_path["/v1/embeddings"]
    assert [ex.path for ex in out] == ["/v1/embeddings", "/v1/chat/completions"]  # end order
    for ex in out:
        assert (ex.http_version, ex.method, ex.authority) == ("2", "POST", "api.openai.com")
        assert ex.request_headers["authorization"] == "<redacted>"
        assert ":path" not in ex.request_headers
        assert ex.status == 200 and not ex.request_truncated and not ex.response_truncated
    assert chat.request_body == bodies[1] and emb.request_body == bodies[3]
    assert emb.request_headers["x-big"] == "v" * 20000
    assert emb.response_body == bodies[0]
    assert chat.response_body == b"data: one\n\ndata: [DONE]\n\n"
    assert emb.response_bytes >= len(bodies[0]) + 3 * 9          # at least three DATA frames
    assert emb.request_bytes > 16384 + 2 * 9 and chat.request_bytes > len(bodies[1])  # CONTINUATION
    assert sum(len(d) for k, d in events if k == "r") > emb.response_bytes + chat.response_bytes
    assert SECRET not in repr(out)


def test_h2_truncation_and_missing_data_payload() -> None:
    p = H2Pair()
    p.client.send_headers(1, req_headers("/v1/chat/completions"), end_stream=True)
    p.flush_client()
    p.server.send_headers(1, [(":status", "200")])
    p.server.send_data(1, b"R" * 12000, end_stream=True)   # one frame
    p.flush_server()
    out, _ = run(p.events, cap=1000)
    [ex] = out
    assert ex.response_body == b"R" * 1000 and ex.response_truncated
    assert ex.response_bytes >= 12000
    # the same read with 5000 bytes of the DATA payload not captured
    conn = HttpConnection(meta(), 16384)
    for kind, data in p.events:
        if kind == "w":
            conn.wrote(data)
        elif len(data) > 12000:
            cut = data.index(b"R" * 100) + 2000
            conn.read(data[:cut], missing=5000)
            conn.read(data[cut + 5000:])
        else:
            conn.read(data)
    [ex] = conn.take()
    assert ex.response_body == b"R" * 2000 and ex.response_truncated and ex.status == 200
    assert not conn.out_of_sync


def test_h2_missing_frame_header_or_hpack_error_loses_sync() -> None:
    p = H2Pair()
    p.client.send_headers(1, req_headers("/v1/a"), end_stream=True)
    p.flush_client()
    conn = HttpConnection(meta(), 16384)
    writes = [d for k, d in p.events if k == "w"]
    conn.wrote(writes[0])
    conn.wrote(writes[1][:4], missing=len(writes[1]) - 4)       # a frame header cut
    assert conn.out_of_sync
    # an HPACK block that refers to a dynamic table entry never seen
    conn = HttpConnection(meta(), 16384)
    conn.wrote(writes[0])
    bad = b"\x00\x00\x01\x01\x05\x00\x00\x00\x01" + b"\xbf"       # index 63: not in any table
    conn.wrote(bad)
    assert conn.out_of_sync


def test_h2_rst_stream_and_close_report_requests() -> None:
    p = H2Pair()
    p.client.send_headers(1, req_headers("/v1/a"), end_stream=True)
    p.client.send_headers(3, req_headers("/v1/b"), end_stream=True)
    p.flush_client()
    p.server.reset_stream(1)
    p.flush_server()
    out, _ = run(p.events)
    assert sorted((ex.path, ex.status) for ex in out) == [("/v1/a", None), ("/v1/b", None)]


# ---------------------------------------------------------------------------------------------
# a stream split anywhere parses as when fed whole

def _split(events: Events, cuts: list[int]) -> Events:
    out: Events = []
    for kind, data in events:
        points = sorted({c % (len(data) + 1) for c in cuts})
        start = 0
        for point in [*points, len(data)]:
            if point > start:
                out.append((kind, data[start:point]))
                start = point
    return out


H2_EVENTS = h2_session(big_header=False)[0]
H1_EVENTS: Events = [
    ("w", request(openai_body(300))), ("r", response(openai_answer())),
    ("w", b"POST /v1/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
     chunked(b"z" * 700, 64)),
    ("r", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     + chunked(b"data: 1\n\n" * 40, 33)),
    ("w", request(b"{}", path="/v1/models")),
    ("r", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + b"data: x\n\n" * 20),
]


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=30000), max_size=12),
       cap=st.sampled_from([64, 1000, 16384]))
@example(cuts=[587], cap=64)               # the request line cut between its CR and LF
def test_split_anywhere_gives_the_same_exchanges(cuts: list[int], cap: int) -> None:
    whole, _ = run(H1_EVENTS, cap=cap)
    split, _ = run(_split(H1_EVENTS, cuts), cap=cap)
    assert len(whole) == 3
    assert comparable(split) == comparable(whole)
    whole, _ = run(H2_EVENTS, cap=cap)
    split, _ = run(_split(H2_EVENTS, cuts), cap=cap)
    assert len(whole) == 2
    assert comparable(split) == comparable(whole)
