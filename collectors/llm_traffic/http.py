"""HTTP/1.1 and HTTP/2 exchanges from the plaintext one TLS connection carried, as the local process
wrote and read it (issue 19). Pure parsing, no I/O: trace.py feeds each connection its bytes in
order, with the count of bytes a call moved but the capture did not keep ("missing").

One ``HttpConnection`` per TLS connection. Its role comes from the first bytes: the local process
is the client when the first bytes it *writes* are an HTTP/1.x request line or the HTTP/2 preface;
when the first bytes it *reads* are one, it is the server side of someone's TLS, and the
connection is ignored (only outgoing requests are reported); anything else is another protocol.

Bounds: bodies keep at most ``capture_bytes`` (a prefix: once a part is missing nothing after it is
kept), a header section or HTTP/2 header block at most ``max(capture_bytes, 16 KiB)``, at most
MAX_PENDING requests awaiting their response (HTTP/1.1 pipelining) and MAX_STREAMS open HTTP/2
streams. Sizes count every byte, captured or not. When framing is lost (missing bytes in a header
section, a chunk-size line or an HTTP/2 frame header, an HPACK error) the connection is marked out
of sync: what it carried so far is reported, nothing after is parsed (its bytes are still counted).
HTTP/2 stays so (its HPACK state is gone); HTTP/1.1 starts again at the next write that begins an
SSL_write call with a request line (``boundary``), and reads from the next call on: a client
sends a request once it has read the previous response, so one loss costs one exchange, not the
rest of a keep-alive connection.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from collectors.llm_traffic.exchange import REDACTED_HEADERS, Exchange

REDACTED = "<redacted>"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_PENDING = 64          # HTTP/1.1 requests awaiting their response on one connection
MAX_STREAMS = 128         # HTTP/2 streams tracked on one connection
MIN_HEAD = 16384          # a header section may use this much even when capture_bytes is smaller
MAX_CHUNK_LINE = 1024     # an HTTP/1.1 chunk-size line (with its extensions)
MAX_TABLE = 65536         # the largest HPACK dynamic table followed

# roles
UNKNOWN, CLIENT, SERVER, OTHER = "unknown", "client", "server", "other"

_REQUEST_LINE = re.compile(rb"([A-Z][A-Z0-9_-]{0,31}) ([\x21-\x7e]+) HTTP/(1\.[01])")
_REQUEST_START = re.compile(rb"[A-Z][A-Z0-9_-]{0,31}(?: [\x21-\x7e]*(?: [A-Z0-9/.]{0,8}\r?)?)?")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([0-9]{3})(?: ([^\r\n]*))?")
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")


def starts_request(data: bytes) -> str:
    """What the first bytes of a stream are: "1.1" (an HTTP/1.x request line), "2" (the HTTP/2
    client preface), "" (neither), or "more" (a prefix of one of them: wait for more bytes)."""
    head = data[:len(H2_PREFACE)]
    if H2_PREFACE.startswith(head):
        return "2" if len(head) == len(H2_PREFACE) else "more"
    end = data.find(b"\n", 0, 8192)
    if end < 0:
        return "more" if len(data) < 8192 and _REQUEST_START.fullmatch(data) else ""
    line = data[:end - 1] if end and data[end - 1] == 13 else data[:end]
    return "1.1" if _REQUEST_LINE.fullmatch(line) else ""


def header_dict(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names lower-cased, repeated headers joined by ", ", secrets' values redacted."""
    out: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1").strip().lower()
        value = REDACTED if name in REDACTED_HEADERS else \
            raw_value.decode("utf-8", "replace").strip()
        out[name] = f"{out[name]}, {value}" if name in out and name not in REDACTED_HEADERS \
            else value
    return out


@dataclass
class ConnMeta:
    """Who holds the connection (the process, read once) and the server name it asked for; the
    tracer updates ``comm`` and ``sni`` when their events come, so it is shared, not copied."""

    pid: int
    comm: str = ""
    exe: str = ""
    container: str = ""
    sni: str = ""


@dataclass(eq=False)
class _Message:
    """One request or response as it goes by."""

    started_at: float
    first: str = ""               # method, or the status code
    second: str = ""              # path, or the reason phrase
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    gap: bool = False             # a part of the body was missing: keep nothing after it
    size: int = 0                 # every byte of the message (head, framing, body), captured or not
    complete: bool = False
    ended_at: float | None = None
    authority: str = ""

    def add_body(self, data: bytes | memoryview, cap: int) -> None:
        """Keep body bytes up to ``cap`` (a prefix of the body)."""
        if not data:
            return
        room = cap - len(self.body)
        if self.gap or room <= 0:
            self.truncated = True
        elif len(data) > room:
            self.body += data[:room]
            self.truncated = True
        else:
            self.body += data

    def skip_body(self) -> None:
        """A part of the body was not captured."""
        self.gap = self.truncated = True


def _exchange(meta: ConnMeta, version: str, req: _Message, resp: _Message | None) -> Exchange:
    status = int(resp.first) if resp is not None and resp.first.isdigit() else None
    return Exchange(
        pid=meta.pid, comm=meta.comm, exe=meta.exe, container=meta.container, sni=meta.sni,
        http_version=version, method=req.first, path=req.second, authority=req.authority,
        request_headers=req.headers, request_body=bytes(req.body),
        request_truncated=req.truncated or not req.complete, request_bytes=req.size,
        status=status, response_headers=resp.headers if resp is not None else {},
        response_body=bytes(resp.body) if resp is not None else b"",
        response_truncated=resp is not None and (resp.truncated or not resp.complete),
        response_bytes=resp.size if resp is not None else 0,
        started_at=req.started_at, ended_at=resp.ended_at if resp is not None else None)


class HttpConnection:
    """The HTTP exchanges of one TLS connection: feed it what the local process wrote and read,
    in order; take() returns the exchanges completed since the last call."""

    def __init__(self, meta: ConnMeta, capture_bytes: int = 16384) -> None:
        self.meta = meta
        self.cap = max(1, capture_bytes)
        self.head_limit = max(self.cap, MIN_HEAD)
        self.role = UNKNOWN
        self.version = ""               # "1.1" or "2" once the role is client
        self.out_of_sync = False
        self.closed = False
        self.bytes_written = 0
        self.bytes_read = 0
        self.dropped = 0                # requests given up because of the bounds
        self.late = 0                   # responses whose request had already been reported
        self.resyncs = 0                # times an HTTP/1.1 connection found its footing again
        self._read_boundary = False     # reads are ignored until one begins a call
        self.last_at = 0.0
        self._start = bytearray()       # the first written bytes, until the role is known
        self._start_read = bytearray()  # the first read bytes, until they show a server
        self._read_decided = False      # whether the first read bytes were looked at
        self._done: list[Exchange] = []
        self._proto: _H1 | _H2 | None = None

    # -- input -------------------------------------------------------------------------------
    def wrote(self, data: bytes, missing: int = 0, ts: float = 0.0,
              boundary: bool = False) -> None:
        """Bytes the local process wrote (``missing`` more went by uncaptured after them);
        ``boundary``: they begin an SSL_write call."""
        self.bytes_written += len(data) + missing
        self.last_at = ts
        if self.out_of_sync and boundary and self.version == "1.1" and not self.closed and \
                starts_request(data) == "1.1":
            # HTTP/1.1 finds its footing again at a write that begins with a request line: a
            # client sends its next request once it has read the previous response
            self.out_of_sync = False
            self.resyncs += 1
            self._proto = _H1(self)
            self._read_boundary = True
        if self.role == UNKNOWN:
            self._start += data
            kind = starts_request(bytes(self._start))
            if kind == "more" and not missing:
                if len(self._start) > self.head_limit:
                    self.role = OTHER
                return
            self.role = CLIENT if kind in ("1.1", "2") else OTHER
            if self.role == CLIENT:
                self._read_decided = True
                self._start_read.clear()
            else:
                self._start.clear()
                return
            self.version = kind
            self._proto = _H1(self) if kind == "1.1" else _H2(self)
            data, self._start = bytes(self._start), bytearray()
        if self.role != CLIENT or self.out_of_sync or self._proto is None:
            return
        self._proto.feed(True, data, missing, ts)

    def read(self, data: bytes, missing: int = 0, ts: float = 0.0,
             boundary: bool = False) -> None:
        """Bytes the local process read (``missing`` more went by uncaptured after them);
        ``boundary``: they begin an SSL_read call."""
        self.bytes_read += len(data) + missing
        self.last_at = ts
        if self._read_boundary:
            if not boundary:
                return              # the rest of a read from before the footing was found
            self._read_boundary = False
        if not self._read_decided:
            # not a client (yet): a request here makes the local process the server (an HTTP/2
            # server may have written its SETTINGS first); anything else read before the first
            # write (the rest of a response from before the capture began) is dropped
            self._start_read += data
            kind = starts_request(bytes(self._start_read))
            if kind in ("1.1", "2"):
                self.role = SERVER
            if kind != "more" or missing or len(self._start_read) > self.head_limit:
                self._read_decided = True
                self._start_read.clear()
            return
        if self.role != CLIENT or self.out_of_sync or self._proto is None:
            return
        self._proto.feed(False, data, missing, ts)

    def ignore(self, role: str) -> None:
        """The capture stopped following this connection (a server's, or not HTTP)."""
        if self.role == UNKNOWN:
            self.role = role

    def close(self, ts: float) -> None:
        """The connection was freed: a body read until the close ends here; requests without a
        response are reported alone."""
        if self.closed:
            return
        self.closed = True
        if self._proto is not None and not self.out_of_sync:
            self._proto.close(ts)

    def expire(self, now: float, max_age: float) -> None:
        """Report alone the requests that have waited more than ``max_age`` seconds for their
        response's first byte."""
        if self._proto is not None and not self.out_of_sync:
            self._proto.expire(now, max_age)

    def take(self) -> list[Exchange]:
        """The exchanges completed since the last call."""
        done, self._done = self._done, []
        return done

    # -- for the protocol parsers --------------------------------------------------------------
    def emit(self, req: _Message, resp: _Message | None) -> None:
        self._done.append(_exchange(self.meta, self.version, req, resp))

    def lose_sync(self) -> None:
        """Framing is lost: report what can be, parse nothing more."""
        if self.out_of_sync:
            return
        self.out_of_sync = True
        if self._proto is not None:
            self._proto.flush()
            self._proto = None


class _H1Dir:
    """One direction of an HTTP/1.x connection."""

    HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, UNTIL_CLOSE, STOP = range(8)

    __slots__ = ("buf", "msg", "remaining", "state")

    def __init__(self) -> None:
        self.state = self.HEAD
        self.buf = bytearray()
        self.msg: _Message | None = None
        self.remaining = 0


class _H1:
    """HTTP/1.1: requests on the write side, responses on the read side, paired in order."""

    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn
        self.req = _H1Dir()
        self.resp = _H1Dir()
        self.pending: deque[_Message] = deque()     # requests (head parsed) awaiting a response
        self.answered: deque[bool] = deque()        # parallel: already reported alone (expired)
        self.head_at: dict[bool, float] = {}        # when the message being read began
        self.info_bytes = 0                         # 1xx responses before the final one

    def feed(self, wrote: bool, data: bytes, missing: int, ts: float) -> None:
        d = self.req if wrote else self.resp
        if d.state == _H1Dir.STOP:
            return
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self.conn.out_of_sync and d.state != _H1Dir.STOP:
            pos = self._step(wrote, d, data, view, pos, ts)
        if missing and not self.conn.out_of_sync and d.state != _H1Dir.STOP:
            self._skip(wrote, d, missing, ts)

    # one state's worth of bytes; returns the new position
    def _step(self, wrote: bool, d: _H1Dir, data: bytes, view: memoryview, pos: int,
              ts: float) -> int:
        st = d.state
        msg = d.msg
        if st == _H1Dir.HEAD:
            if not d.buf:
                while pos < len(view) and view[pos] in (13, 10):   # empty lines between messages
                    pos += 1
                if pos == len(view):
                    return pos
                self.head_at[wrote] = ts
            start = max(0, len(d.buf) - 3)
            d.buf += view[pos:]
            end = d.buf.find(b"\r\n\r\n", start)
            sep = 4
            lf = d.buf.find(b"\n\n", start)
            if lf >= 0 and (end < 0 or lf < end):
                end, sep = lf, 2
            if end < 0:
                if len(d.buf) > self.conn.head_limit:
                    self.conn.lose_sync()
                return len(view)
            used = end + sep - (len(d.buf) - (len(view) - pos))
            head = bytes(d.buf[:end])
            d.buf.clear()
            self._head(wrote, d, head, end + sep, ts)
            return pos + used
        if msg is None:             # cannot happen: every body state has its message
            self.conn.lose_sync()
            return len(view)
        if st in (_H1Dir.LENGTH, _H1Dir.CHUNK_DATA, _H1Dir.UNTIL_CLOSE):
            take = len(view) - pos if st == _H1Dir.UNTIL_CLOSE else min(d.remaining, len(view) - pos)
            msg.add_body(view[pos:pos + take], self.conn.cap)
            self._body_bytes(d, msg, take, wrote, ts)
            return pos + take
        if st == _H1Dir.CHUNK_END:      # the CRLF after a chunk's data
            b = view[pos]
            if b == 13 and d.remaining == 2:
                d.remaining = 1
            elif b == 10:
                d.state = _H1Dir.CHUNK_SIZE
            else:
                self.conn.lose_sync()
            msg.size += 1
            return pos + 1
        # CHUNK_SIZE and TRAILER: lines
        nl = data.find(b"\n", pos)
        if nl < 0:
            d.buf += view[pos:]
            msg.size += len(view) - pos
            if len(d.buf) > MAX_CHUNK_LINE:
                self.conn.lose_sync()
            return len(view)
        d.buf += view[pos:nl + 1]
        msg.size += nl + 1 - pos
        line = bytes(d.buf).rstrip(b"\r\n")
        d.buf.clear()
        if st == _H1Dir.CHUNK_SIZE:
            m = _CHUNK_SIZE.fullmatch(line)
            if m is None:
                self.conn.lose_sync()
                return len(view)
            size = int(m.group(1), 16)
            if size == 0:
                d.state = _H1Dir.TRAILER
            else:
                d.state, d.remaining = _H1Dir.CHUNK_DATA, size
        elif not line:                  # the empty line after the trailers
            msg.ended_at = ts
            self._complete(wrote, d, ts)
        return nl + 1

    def _head(self, wrote: bool, d: _H1Dir, head: bytes, size: int, ts: float) -> None:
        lines = head.split(b"\n")
        start = lines[0].rstrip(b"\r")
        pairs: list[tuple[bytes, bytes]] = []
        for raw in lines[1:]:
            line = raw.rstrip(b"\r")
            if line[:1] in (b" ", b"\t") and pairs:       # obsolete line folding
                pairs[-1] = (pairs[-1][0], pairs[-1][1] + b" " + line.strip())
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                self.conn.lose_sync()
                return
            pairs.append((name, value))
        headers = header_dict(pairs)
        started = self.head_at.get(wrote, ts)
        if wrote:
            m = _REQUEST_LINE.fullmatch(start)
            if m is None:
                self.conn.lose_sync()
                return
            msg = _Message(started, m.group(1).decode(), m.group(2).decode("latin-1"),
                           headers, size=size, authority=headers.get("host", ""))
            d.msg = msg
            if len(self.pending) >= MAX_PENDING:
                old = self.pending.popleft()
                if not self.answered.popleft():
                    self.conn.dropped += 1
                    self.conn.emit(old, None)
            self.pending.append(msg)
            self.answered.append(False)
            self._framing(wrote, d, headers, ts, has_body_default=False)
            return
        m = _STATUS_LINE.fullmatch(start)
        if m is None:
            self.conn.lose_sync()
            return
        status = int(m.group(2))
        req = self.pending[0] if self.pending else None
        method = req.first if req is not None else ""
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            # the connection leaves HTTP (WebSocket, a tunnel): report this exchange, then stop
            resp = _Message(started, str(status), (m.group(3) or b"").decode("latin-1"), headers,
                            size=size, complete=True, ended_at=ts)
            d.msg = resp
            self._complete(False, d, ts)
            self.req.state = self.resp.state = _H1Dir.STOP
            return
        if 100 <= status < 200:        # informational (100 Continue): the real response follows
            self.info_bytes += size
            return
        d.msg = _Message(started, str(status), (m.group(3) or b"").decode("latin-1"), headers,
                         size=size + self.info_bytes, ended_at=ts)
        self.info_bytes = 0
        if method == "HEAD" or status in (204, 304):
            self._complete(False, d, ts)
            return
        self._framing(False, d, headers, ts, has_body_default=True)

    def _framing(self, wrote: bool, d: _H1Dir, headers: dict[str, str], ts: float,
                 has_body_default: bool) -> None:
        te = headers.get("transfer-encoding", "").lower()
        if te:
            if te.rsplit(",", 1)[-1].strip() == "chunked":
                d.state = _H1Dir.CHUNK_SIZE
            elif has_body_default:
                d.state = _H1Dir.UNTIL_CLOSE
            else:                   # a request with a body of unknown length: cannot be framed
                self.conn.lose_sync()
            return
        cl = headers.get("content-length")
        if cl is not None:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                self.conn.lose_sync()
                return
            length = int(next(iter(values)))
            if length:
                d.state, d.remaining = _H1Dir.LENGTH, length
            else:
                self._complete(wrote, d, ts)
            return
        if has_body_default:
            d.state = _H1Dir.UNTIL_CLOSE
        else:
            self._complete(wrote, d, ts)

    def _complete(self, wrote: bool, d: _H1Dir, ts: float) -> None:
        msg = d.msg
        d.msg, d.state, d.remaining = None, _H1Dir.HEAD, 0
        if msg is None:
            return
        msg.complete = True
        if msg.ended_at is None:
            msg.ended_at = ts
        if wrote:
            return                          # paired when its response completes
        if not self.pending:
            return                          # a response to no request seen (408 on an idle close)
        req = self.pending.popleft()
        if self.answered.popleft():
            self.conn.late += 1             # already reported alone: this answer came too late
            return
        self.conn.emit(req, msg)

    def _skip(self, wrote: bool, d: _H1Dir, missing: int, ts: float) -> None:
        """``missing`` bytes went by uncaptured: skipped inside a body, else framing is lost."""
        while missing and not self.conn.out_of_sync and d.state != _H1Dir.STOP:
            st, msg = d.state, d.msg
            if msg is None or st in (_H1Dir.HEAD, _H1Dir.CHUNK_SIZE, _H1Dir.CHUNK_END,
                                     _H1Dir.TRAILER):
                if st == _H1Dir.HEAD and not d.buf and msg is None and not wrote and \
                        not self.pending:
                    return                  # nothing expected: bytes of no known message
                self.conn.lose_sync()
                return
            take = missing if st == _H1Dir.UNTIL_CLOSE else min(missing, d.remaining)
            msg.skip_body()
            missing -= take
            self._body_bytes(d, msg, take, wrote, ts)

    def _body_bytes(self, d: _H1Dir, msg: _Message, take: int, wrote: bool, ts: float) -> None:
        """Count ``take`` body bytes of ``msg`` (seen or skipped) and move ``d`` on at the end
        of a sized body or a chunk's data."""
        msg.size += take
        msg.ended_at = ts
        if d.state == _H1Dir.UNTIL_CLOSE:
            return
        d.remaining -= take
        if d.remaining == 0:
            if d.state == _H1Dir.LENGTH:
                self._complete(wrote, d, ts)
            else:
                d.state, d.remaining = _H1Dir.CHUNK_END, 2

    def close(self, ts: float) -> None:
        d = self.resp
        if d.state == _H1Dir.UNTIL_CLOSE and d.msg is not None:
            self._complete(False, d, d.msg.ended_at or ts)
        self.flush()

    def flush(self) -> None:
        """The connection ends (closed or out of sync): a response in progress is reported as it
        is (truncated), the other requests alone."""
        resp = self.resp.msg
        if resp is not None and self.pending:
            req = self.pending.popleft()
            if not self.answered.popleft():
                self.conn.emit(req, resp)
        for req, answered in zip(self.pending, self.answered, strict=True):
            if not answered:
                self.conn.emit(req, None)
        self.pending.clear()
        self.answered.clear()
        self.req = _H1Dir()
        self.resp = _H1Dir()
        self.req.state = self.resp.state = _H1Dir.STOP

    def expire(self, now: float, max_age: float) -> None:
        for i, req in enumerate(self.pending):
            if req.started_at > now - max_age:
                break
            if i == 0 and self.resp.msg is not None:
                break                       # its response has begun
            if not self.answered[i] and req.complete:
                self.answered[i] = True
                self.conn.emit(req, None)


@dataclass(eq=False)
class _H2Stream:
    req: _Message | None = None
    resp: _Message | None = None
    req_bytes: int = 0
    resp_bytes: int = 0


class _H2Dir:
    """One direction of an HTTP/2 connection: frames, and the HPACK state of its encoder."""

    PREFACE, HEADER, PAYLOAD, DATA_PAD, DATA, PADDING, STOP = range(7)

    __slots__ = ("block", "block_bytes", "block_end_stream", "block_kind", "block_sid", "buf",
                 "decoder",
                 "end_stream", "frame", "left", "pad", "skipping", "state")

    def __init__(self, preface: bool) -> None:
        self.state = self.PREFACE if preface else self.HEADER
        self.buf = bytearray()
        self.frame: Frame | None = None
        self.left = 0               # payload bytes of the current frame still to come
        self.pad = 0                # DATA: padding bytes at the frame's end
        self.end_stream = False
        self.skipping = False       # a frame too large to keep whose content is not needed
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 4096
        self.block = bytearray()    # a header block across HEADERS/PUSH_PROMISE + CONTINUATION
        self.block_sid = 0
        self.block_kind = ""        # "headers" or "push"
        self.block_end_stream = False
        self.block_bytes = 0        # the frames of the header block, on the wire


class _H2:
    """HTTP/2: frames per direction, header blocks through HPACK, exchanges per stream."""

    def __init__(self, conn: HttpConnection) -> None:
        self.conn = conn
        self.dirs = {True: _H2Dir(preface=True), False: _H2Dir(preface=False)}
        self.streams: dict[int, _H2Stream] = {}
        self.expired: set[int] = set()

    def feed(self, wrote: bool, data: bytes, missing: int, ts: float) -> None:
        d = self.dirs[wrote]
        if d.state == _H2Dir.STOP:
            return
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self.conn.out_of_sync:
            pos = self._step(wrote, d, view, pos, ts)
        if missing and not self.conn.out_of_sync:
            self._skip(wrote, d, missing, ts)

    def _step(self, wrote: bool, d: _H2Dir, view: memoryview, pos: int, ts: float) -> int:
        st = d.state
        avail = len(view) - pos
        if st == _H2Dir.PREFACE:
            take = min(avail, len(H2_PREFACE) - len(d.buf))
            d.buf += view[pos:pos + take]
            if not H2_PREFACE.startswith(d.buf):
                self.conn.lose_sync()
            elif len(d.buf) == len(H2_PREFACE):
                d.buf.clear()
                d.state = _H2Dir.HEADER
            return pos + take
        if st == _H2Dir.HEADER:
            take = min(avail, 9 - len(d.buf))
            d.buf += view[pos:pos + take]
            if len(d.buf) == 9:
                header = bytes(d.buf)
                d.buf.clear()
                self._frame_header(wrote, d, header, ts)
            return pos + take
        frame = d.frame
        if frame is None:
            self.conn.lose_sync()
            return len(view)
        if st == _H2Dir.DATA_PAD:                   # a padded DATA frame's pad length
            d.pad = view[pos]
            d.left -= 1
            self._count(wrote, frame.stream_id, 1)
            if d.pad > d.left:
                self.conn.lose_sync()
            else:
                d.state = _H2Dir.DATA if d.left > d.pad else _H2Dir.PADDING
                self._after_payload_bytes(wrote, d, ts)
            return pos + 1
        if st in (_H2Dir.DATA, _H2Dir.PADDING):
            body_left = d.left - d.pad if st == _H2Dir.DATA else d.left
            take = min(avail, body_left)
            if st == _H2Dir.DATA:
                self._data(wrote, frame.stream_id, view[pos:pos + take], ts)
            d.left -= take
            self._count(wrote, frame.stream_id, take)
            if st == _H2Dir.DATA and d.left == d.pad:
                d.state = _H2Dir.PADDING
            self._after_payload_bytes(wrote, d, ts)
            return pos + take
        # PAYLOAD of another frame
        take = min(avail, d.left)
        if not d.skipping:
            d.buf += view[pos:pos + take]
        d.left -= take
        self._count(wrote, frame.stream_id, take)
        self._after_payload_bytes(wrote, d, ts)
        return pos + take

    def _frame_header(self, wrote: bool, d: _H2Dir, header: bytes, ts: float) -> None:
        try:
            frame, length = Frame.parse_frame_header(memoryview(header))
        except HyperframeError:
            self.conn.lose_sync()
            return
        if d.block_kind and not isinstance(frame, ContinuationFrame):
            self.conn.lose_sync()               # a header block must continue uninterrupted
            return
        d.frame, d.left, d.pad, d.skipping = frame, length, 0, False
        d.end_stream = "END_STREAM" in frame.flags
        if isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            d.block_bytes = 0
        if isinstance(frame, (HeadersFrame, PushPromiseFrame, ContinuationFrame)):
            d.block_bytes += 9 + length
        self._count(wrote, frame.stream_id, 9)
        if isinstance(frame, DataFrame):
            if "PADDED" in frame.flags and not length:
                self.conn.lose_sync()
                return
            d.state = _H2Dir.DATA_PAD if "PADDED" in frame.flags else _H2Dir.DATA
        else:
            d.state = _H2Dir.PAYLOAD
            if length > self.conn.head_limit:
                if isinstance(frame, (HeadersFrame, ContinuationFrame, PushPromiseFrame)):
                    self.conn.lose_sync()
                    return
                d.skipping = True
        self._after_payload_bytes(wrote, d, ts)

    def _after_payload_bytes(self, wrote: bool, d: _H2Dir, ts: float) -> None:
        """At a frame's end: act on it, then expect the next frame header."""
        if d.left or d.state == _H2Dir.HEADER or d.frame is None:
            return
        frame = d.frame
        if d.state == _H2Dir.DATA_PAD:
            return                  # a padded DATA frame of no payload at all: malformed, wait
        payload, skipped = bytes(d.buf), d.skipping
        d.buf.clear()
        d.state, d.frame = _H2Dir.HEADER, None
        if isinstance(frame, DataFrame):
            if d.end_stream:
                self._end_stream(wrote, frame.stream_id, ts)
            return
        if skipped:
            return
        try:
            frame.parse_body(memoryview(payload))
        except HyperframeError:
            self.conn.lose_sync()
            return
        self._frame(wrote, d, frame, ts)

    def _frame(self, wrote: bool, d: _H2Dir, frame: Frame, ts: float) -> None:
        if isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            d.block = bytearray(frame.data)
            d.block_sid = frame.stream_id
            d.block_kind = "headers" if isinstance(frame, HeadersFrame) else "push"
            d.block_end_stream = "END_STREAM" in frame.flags
            if "END_HEADERS" in frame.flags:
                self._header_block(wrote, d, ts)
        elif isinstance(frame, ContinuationFrame):
            if not d.block_kind or frame.stream_id != d.block_sid:
                self.conn.lose_sync()
                return
            d.block += frame.data
            if len(d.block) > self.conn.head_limit:
                self.conn.lose_sync()
                return
            if "END_HEADERS" in frame.flags:
                self._header_block(wrote, d, ts)
        elif isinstance(frame, SettingsFrame):
            size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
            if size is not None and "ACK" not in frame.flags:
                # what this side's decoder allows bounds the other side's encoder
                self.dirs[not wrote].decoder.max_allowed_table_size = min(size, MAX_TABLE)
        elif isinstance(frame, RstStreamFrame):
            self._finish(frame.stream_id, reset=True)

    def _header_block(self, wrote: bool, d: _H2Dir, ts: float) -> None:
        block, sid, kind, end = bytes(d.block), d.block_sid, d.block_kind, d.block_end_stream
        d.block, d.block_kind = bytearray(), ""
        try:
            pairs = d.decoder.decode(block, raw=True)
        except (hpack.HPACKError, IndexError, ValueError, UnicodeError):
            self.conn.lose_sync()
            return
        if kind == "push":
            return                  # decoded only to keep the HPACK state; pushes are not requests
        raw: list[tuple[bytes, bytes]] = [(bytes(n), bytes(v)) for n, v in pairs]
        pseudo = {n.decode("latin-1"): v.decode("utf-8", "replace") for n, v in raw
                  if n.startswith(b":")}
        headers = header_dict((n, v) for n, v in raw if not n.startswith(b":"))
        stream = self.streams.get(sid)
        if wrote:
            if stream is None:
                if not sid % 2:
                    return
                stream = self._open(sid)
                stream.req_bytes += d.block_bytes
            if stream.req is None:
                stream.req = _Message(ts, pseudo.get(":method", ""), pseudo.get(":path", ""),
                                      headers, authority=pseudo.get(":authority", "")
                                      or headers.get("host", ""))
        else:
            if stream is None:
                return
            status = pseudo.get(":status", "")
            if stream.resp is None and status and not status.startswith("1"):
                stream.resp = _Message(ts, status, "", headers, ended_at=ts)
            elif stream.resp is not None:
                stream.resp.ended_at = ts
        if end:
            self._end_stream(wrote, sid, ts)

    def _open(self, sid: int) -> _H2Stream:
        if len(self.streams) >= MAX_STREAMS:
            oldest = next(iter(self.streams))
            self.conn.dropped += 1
            self._finish(oldest, reset=True)
        stream = self.streams[sid] = _H2Stream()
        return stream

    def _count(self, wrote: bool, sid: int, n: int) -> None:
        stream = self.streams.get(sid) if sid else None
        if stream is None:
            return
        if wrote:
            stream.req_bytes += n
        else:
            stream.resp_bytes += n

    def _data(self, wrote: bool, sid: int, data: memoryview, ts: float) -> None:
        stream = self.streams.get(sid)
        msg = None if stream is None else stream.req if wrote else stream.resp
        if msg is not None:
            msg.add_body(data, self.conn.cap)
            msg.ended_at = ts

    def _end_stream(self, wrote: bool, sid: int, ts: float) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        msg = stream.req if wrote else stream.resp
        if msg is not None:
            msg.complete = True
            msg.ended_at = ts
        if not wrote:
            self._finish(sid)

    def _finish(self, sid: int, reset: bool = False) -> None:
        """The stream ended (its response complete, or reset): report it."""
        stream = self.streams.pop(sid, None)
        if sid in self.expired:
            self.expired.discard(sid)
            if not reset:
                self.conn.late += 1
            return
        if stream is None or stream.req is None:
            return
        stream.req.size = stream.req_bytes
        if stream.resp is not None:
            stream.resp.size = stream.resp_bytes
        self.conn.emit(stream.req, stream.resp)

    def _skip(self, wrote: bool, d: _H2Dir, missing: int, ts: float) -> None:
        """Missing bytes: skipped inside a DATA payload or a frame whose content is not needed;
        anywhere else (a frame header, a header block) framing is lost."""
        while missing and not self.conn.out_of_sync:
            frame = d.frame
            if d.state in (_H2Dir.DATA, _H2Dir.PADDING) and frame is not None:
                take = min(missing, d.left)
                stream = self.streams.get(frame.stream_id)
                msg = None if stream is None else stream.req if wrote else stream.resp
                if msg is not None and d.state == _H2Dir.DATA:
                    msg.skip_body()
                self._count(wrote, frame.stream_id, take)
                d.left -= take
                missing -= take
                if d.left <= d.pad:
                    d.state = _H2Dir.PADDING
                self._after_payload_bytes(wrote, d, ts)
            elif d.state == _H2Dir.PAYLOAD and frame is not None and (
                    d.skipping or not isinstance(frame, (HeadersFrame, ContinuationFrame,
                                                         PushPromiseFrame, SettingsFrame))):
                take = min(missing, d.left)
                d.skipping = True
                self._count(wrote, frame.stream_id, take)
                d.left -= take
                missing -= take
                self._after_payload_bytes(wrote, d, ts)
            else:
                self.conn.lose_sync()
                return

    def close(self, ts: float) -> None:
        self.flush()

    def flush(self) -> None:
        """The connection ends: every stream with a request is reported as it is."""
        for sid in list(self.streams):
            self._finish(sid, reset=True)
        self.expired.clear()
        self.dirs[True].state = self.dirs[False].state = _H2Dir.STOP

    def expire(self, now: float, max_age: float) -> None:
        for sid, stream in list(self.streams.items()):
            req = stream.req
            if sid in self.expired or req is None or stream.resp is not None or not req.complete or \
                    req.started_at > now - max_age:
                continue
            req.size = stream.req_bytes
            self.conn.emit(req, None)
            self.expired.add(sid)                   # its late answer is counted, not reported
