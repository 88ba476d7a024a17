"""The front door's HTTP/1.1 filter: what a job may ask of Triton's HTTP or metrics port, request by request.

One :class:`HttpFilter` per admitted connection, fed the bytes of both directions. The door calls it under
one lock per connection and sends what each call returns for the client before it releases that lock (a
refusal returned by :meth:`HttpFilter.client_bytes` must not overtake the end of a response returned just
before by :meth:`HttpFilter.server_bytes`); once :attr:`HttpFilter.ended` is set, after sending what the
call returned, it closes the connection.

Requests are framed strictly, the way Triton's parser (libevhtp's htparse) frames them, so that the filter
and the server always agree on where each request ends: a request line ``METHOD SP /path SP HTTP/1.1``
(or 1.0), every line ended by CRLF, a header section of at most :data:`MAX_HEAD` bytes, a body of
``Content-Length`` bytes or of chunks (``Transfer-Encoding: chunked``, no chunk extensions, no trailers:
htparse ends a request at its first trailer line), never both. Anything else (obs-fold, a bare CR or LF,
a control character, two different lengths, another transfer coding) is a protocol violation:
:attr:`HttpFilter.ended` says why and the door closes the connection.

An allowed request goes to the server as it came, its body passed through by slicing. A refused one
never reaches the server (its body is skipped) and gets its own ``403 Forbidden`` with Triton's error
shape (``{"error": "..."}``), in order: the filter follows the server's responses (status line, length,
chunks, 1xx, HEAD/204/304, ``Connection: close``) and sends a refusal only once every earlier response is
complete.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Callable, Union

from glidein_triton.worker.door_filter import Chunk

#: The most bytes a request's (or a response's) request line and header section may take.
MAX_HEAD = 64 * 1024
#: The most requests a client may have waiting for their answers (forwarded or refused) at once.
MAX_PIPELINED = 128
#: The most hex digits of a chunk size (htparse's size does not overflow below 16).
MAX_CHUNK_DIGITS = 15
#: The most digits of a Content-Length.
MAX_LENGTH_DIGITS = 18

JOBS_MAY = (
    "jobs may use health, metadata, inference, model configuration, statistics and the repository index"
)
METRICS_MAY = "the metrics port serves GET /metrics only"

REQUEST_LINE = re.compile(rb"([A-Z]{1,20}) (/[\x21-\x7e]*) HTTP/1\.([01])")
HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):(.*)")
#: Control characters other than HT, CR and LF (CR and LF are checked to come only as CRLF).
CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
LENGTH_VALUE = re.compile(rb" *([0-9]{1,%d})" % MAX_LENGTH_DIGITS)
#: htparse takes only these two spellings for chunked (a first letter of either case, then "hunked").
CHUNKED_VALUE = re.compile(rb" *[cC]hunked")
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,%d})\r\n" % MAX_CHUNK_DIGITS)
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?")
PERCENT = re.compile(r"%(..)?")
#: Percent-escapes a path may not carry: what would change its meaning once decoded (dot, slash,
#: backslash, percent, query and fragment marks, control characters).
ESCAPED_MEANING = set("./\\%?#") | {chr(code) for code in range(0x20)} | {"\x7f"}

#: Triton's model routes (src/http_server.cc, model_regex_), less trace/setting.
MODEL = re.compile(
    r"/v2/models/([^/]+)(?:/versions/([0-9]+))?(?:/(infer|generate|generate_stream|ready|config|stats))?"
)
MODEL_GET = {None, "ready", "config", "stats"}
MODEL_POST = {"infer", "generate", "generate_stream"}
SERVER_GET = {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/stats"}
#: Triton's other routes, by what they do, to name a refusal.
REFUSED_ROUTES = (
    (re.compile(r"/v2/repository(?:/[^/]+)?/models/[^/]+/load"), "model load"),
    (re.compile(r"/v2/repository(?:/[^/]+)?/models/[^/]+/unload"), "model unload"),
    (re.compile(r"/v2/repository/[^/]+/index"), "the index of a named repository"),
    (re.compile(r"/v2/systemsharedmemory(?:/.*)?"), "system shared memory"),
    (re.compile(r"/v2/cudasharedmemory(?:/.*)?"), "CUDA shared memory"),
    (re.compile(r"/v2(?:/models/[^/]+)?/trace/setting"), "a trace setting"),
    (re.compile(r"/v2/logging"), "a logging setting"),
)

#: A route decision: (method, path) -> empty when allowed, else what is refused.
Route = Callable[[str, str], str]


class Violation(Exception):
    """The bytes break HTTP/1.1 framing as the filter allows it: the connection must end."""


def path_problem(path: str) -> str:
    """Empty when ``path`` is plain, else what makes it ambiguous (dot segments, empty segments,
    backslashes, percent-escapes that change its meaning)."""
    if ".." in path:
        return "a path with '..'"
    if "//" in path:
        return "a path with '//'"
    if "\\" in path:
        return "a path with a backslash"
    for escape in PERCENT.finditer(path):
        digits = escape.group(1) or ""
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
            return "a path with a stray '%'"
        if chr(int(digits, 16)) in ESCAPED_MEANING:
            return f"a path with '%{digits}'"
    return ""


def job_route(method: str, path: str) -> str:
    """Empty when a job may send ``method path`` to Triton's HTTP port, else what it asked for."""
    if method == "GET" and path in SERVER_GET:
        return ""
    if method == "POST" and path == "/v2/repository/index":
        return ""
    model = MODEL.fullmatch(path)
    if model and (
        model.group(3) in MODEL_GET if method == "GET" else method == "POST" and model.group(3) in MODEL_POST
    ):
        return ""
    named = next((what for pattern, what in REFUSED_ROUTES if pattern.fullmatch(path)), "")
    return f"{named} ({method} {path})" if named else f"{method} {path}"


def metrics_route(method: str, path: str) -> str:
    """Empty for Triton's metrics (``GET /metrics``), else what was asked for."""
    return "" if method == "GET" and path in ("/metrics", "/metrics/") else f"{method} {path}"


def refusal(what: str, may: str, close: bool, keep_alive_header: bool = False) -> bytes:
    """The 403 answer for a refused request, with Triton's error shape."""
    body = json.dumps({"error": f"glidein-triton: {what} is not allowed for jobs; {may}"}).encode()
    connection = (
        b"Connection: close\r\n" if close else b"Connection: keep-alive\r\n" if keep_alive_header else b""
    )
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return head + connection + b"\r\n" + body


class Body:
    """Where a message body ends: after ``length`` bytes, or after strict chunks and an empty trailer."""

    LENGTH, CHUNK_LINE, CHUNK_DATA, CHUNK_END, TRAILER, DONE = range(6)

    def __init__(self, length: int = 0, chunked: bool = False) -> None:
        self.state = self.CHUNK_LINE if chunked else self.LENGTH if length else self.DONE
        self.remaining = length
        self.line = b""

    @property
    def done(self) -> bool:
        return self.state == self.DONE

    def consume(self, data: Chunk, start: int) -> int:
        """Take the body's bytes of ``data`` from ``start`` on; the index after the last one taken."""
        position, end = start, len(data)
        while position < end and self.state != self.DONE:
            if self.state in (self.LENGTH, self.CHUNK_DATA):
                taken = min(self.remaining, end - position)
                position += taken
                self.remaining -= taken
                if not self.remaining:
                    self.state = self.DONE if self.state == self.LENGTH else self.CHUNK_END
            elif self.state == self.CHUNK_LINE:
                position = self.chunk_line(data, position)
            else:
                position = self.crlf(data, position)
        return position

    def chunk_line(self, data: Chunk, position: int) -> int:
        window = bytes(data[position : position + MAX_CHUNK_DIGITS + 2 - len(self.line)])
        newline = window.find(b"\n")
        if newline < 0:
            self.line += window
            if len(self.line) > MAX_CHUNK_DIGITS + 1:
                raise Violation("a chunk size line that is not 1 to 15 hex digits and CRLF")
            return len(data)
        line, self.line = self.line + window[: newline + 1], b""
        size = CHUNK_LINE.fullmatch(line)
        if not size:
            raise Violation(f"a chunk size line that is not hex digits and CRLF: {line[:40]!r}")
        self.remaining = int(size.group(1), 16)
        self.state = self.CHUNK_DATA if self.remaining else self.TRAILER
        return position + newline + 1

    def crlf(self, data: Chunk, position: int) -> int:
        """The CRLF after a chunk's data, or the empty trailer section after the last chunk."""
        taken = bytes(data[position : position + 2 - len(self.line)])
        self.line += taken
        if not b"\r\n".startswith(self.line):
            what = "trailer fields (Triton's parser ends the request at the first one)"
            raise Violation(what if self.state == self.TRAILER else "chunk data not followed by CRLF")
        if self.line == b"\r\n":
            self.line = b""
            self.state = self.CHUNK_LINE if self.state == self.CHUNK_END else self.DONE
        return position + len(taken)


def read_head(held: bytearray, data: Chunk, position: int, what: str) -> tuple[bytes, int]:
    """(the head that ends in ``data`` (empty while incomplete, the start kept in ``held``), the position
    after it)."""
    if not held:
        window = bytes(data[position : position + MAX_HEAD])
        end = window.find(b"\r\n\r\n")
        if end >= 0:
            return window[: end + 4], position + end + 4
    before = len(held)
    held += data[position : position + MAX_HEAD - before]
    end = held.find(b"\r\n\r\n", max(0, before - 3))
    if end < 0:
        if len(held) >= MAX_HEAD:
            raise Violation(f"a {what} head over {MAX_HEAD} bytes")
        return b"", len(data)
    head = bytes(held[: end + 4])
    del held[:]
    return head, position + end + 4 - before


@dataclass
class Head:
    """A message head, parsed: its start line's parts, and the headers that frame or end it."""

    start: tuple[bytes, ...]
    length: int | None
    chunked: bool
    connection: list[str]
    expect: bool
    upgrade: bool


def split_head(head: bytes) -> tuple[bytes, list[bytes]]:
    """(start line, header lines) of a head that ends with CRLF CRLF; strict line endings."""
    if head.count(b"\r") != head.count(b"\n") or head.count(b"\r\n") != head.count(b"\n"):
        raise Violation("a bare CR or LF in the head (lines must end with CRLF)")
    found = CONTROL.search(head)
    if found:
        raise Violation(f"a control character {found.group()!r} in the head")
    lines = head[:-4].split(b"\r\n")
    return lines[0], lines[1:]


def parse_headers(lines: list[bytes], start: tuple[bytes, ...]) -> Head:
    """The framing headers, checked: one length (or several equal ones) or one ``chunked``, not both."""
    lengths: list[int] = []
    codings = 0
    connection: list[str] = []
    expect = upgrade = False
    for line in lines:
        field = HEADER_LINE.fullmatch(line)
        if not field:
            what = (
                "a folded header line (obs-fold)"
                if line[:1] in (b" ", b"\t")
                else f"a bad header line {line[:60]!r}"
            )
            raise Violation(what)
        name, value = field.group(1).lower(), field.group(2)
        if name == b"content-length":
            number = LENGTH_VALUE.fullmatch(value)
            if not number:
                raise Violation(f"a Content-Length that is not a number: {value[:40]!r}")
            lengths.append(int(number.group(1)))
        elif name == b"transfer-encoding":
            if not CHUNKED_VALUE.fullmatch(value) or codings:
                raise Violation(f"a Transfer-Encoding other than one 'chunked': {value[:40]!r}")
            codings += 1
        elif name == b"connection":
            connection += [token.strip().lower() for token in value.decode("latin-1").split(",")]
        elif name == b"expect":
            expect = True
        elif name == b"upgrade":
            upgrade = True
    if len(set(lengths)) > 1:
        raise Violation("two different Content-Length values")
    if lengths and codings:
        raise Violation("both Content-Length and Transfer-Encoding")
    return Head(start, lengths[0] if lengths else None, bool(codings), connection, expect, upgrade)


@dataclass
class Refusal:
    """A 403 waiting for the responses before it; ``closes`` when the connection ends after it."""

    answer: bytes
    closes: bool


@dataclass
class Forwarded:
    """A request the server answers; HEAD answers carry no body whatever their headers say."""

    method: bytes


Waiting = Union[Refusal, Forwarded]


class Spans:
    """The parts of one buffer to pass on, as few slices as possible (the whole buffer: no copy)."""

    def __init__(self, data: Chunk) -> None:
        self.data = data
        self.pieces: list[bytes | tuple[int, int]] = []

    def add(self, start: int, end: int, whole: bytes = b"") -> None:
        """``data[start:end]``; or ``whole`` when it began in an earlier buffer (and ends at ``end``)."""
        if whole and len(whole) != end - start:
            self.pieces.append(whole)
            return
        last = self.pieces[-1] if self.pieces else None
        if isinstance(last, tuple) and last[1] == start:
            self.pieces[-1] = (last[0], end)
        elif end > start:
            self.pieces.append((start, end))

    def joined(self) -> Chunk:
        if len(self.pieces) == 1 and self.pieces[0] == (0, len(self.data)):
            return self.data
        return b"".join(self.data[p[0] : p[1]] if isinstance(p, tuple) else p for p in self.pieces)


class HttpFilter:
    """The filter of one connection to Triton's HTTP port (``route=job_route``) or metrics port
    (``route=metrics_route``)."""

    def __init__(self, route: Route = job_route, may: str = JOBS_MAY) -> None:
        self.route = route
        self.may = may
        self.refused = 0
        self.last_refusal = ""
        self.reason = ""
        self.waiting: deque[Waiting] = deque()
        # The client's side: the head being read, then the body of the current request.
        self.request_head = bytearray()
        self.request_body: Body | None = None
        self.forwarding = True
        self.draining = False
        # The server's side: the head being read, then the body of the current response.
        self.response_head = bytearray()
        self.response_body: Body | None = None
        self.until_close = False

    @property
    def ended(self) -> str:
        """Empty while the connection may go on, else why the door must close it (once it sent what
        the last call returned)."""
        return self.reason

    def client_bytes(self, data: Chunk) -> tuple[Chunk, bytes]:
        """What the client sent -> (bytes for the server now, bytes for the client now)."""
        forward = Spans(data)
        answer: list[bytes] = []
        position = 0
        try:
            while position < len(data) and not self.reason and not self.draining:
                if self.request_body is None:
                    start = position
                    head, position = read_head(self.request_head, data, position, "request")
                    if head and self.decide(head, answer):
                        forward.add(start, position, head)
                    continue
                end = self.request_body.consume(data, position)
                if self.forwarding:
                    forward.add(position, end)
                position = end
                if self.request_body.done:
                    self.request_body = None
        except Violation as violation:
            self.reason = f"protocol violation from the client: {violation}"
        return forward.joined(), b"".join(answer)

    def decide(self, head: bytes, answer: list[bytes]) -> bool:
        """Whether to forward the request of ``head`` (else its refusal is sent or queued); its body next."""
        start, lines = split_head(head)
        request = REQUEST_LINE.fullmatch(start)
        if not request:
            raise Violation(f"a request line that is not 'METHOD /path HTTP/1.x': {start[:80]!r}")
        parsed = parse_headers(lines, request.groups())
        if len(self.waiting) >= MAX_PIPELINED:
            raise Violation(f"more than {MAX_PIPELINED} requests waiting for their answers")
        method, target, minor = (part.decode("ascii") for part in parsed.start)
        path = target.split("?", 1)[0]
        refused = (
            ("a request target with '#'" if "#" in target else path_problem(path))
            or ("a protocol upgrade" if parsed.upgrade else "")
            or self.route(method, path)
        )
        self.request_body = Body(parsed.length or 0, parsed.chunked)
        self.forwarding = not refused
        if not refused:
            self.waiting.append(Forwarded(method.encode()))
            return True
        self.refused += 1
        self.last_refusal = refused
        keep_alive = "keep-alive" in parsed.connection
        # A refused request whose client waits for 100 Continue may never send its body: close after it.
        closes = "close" in parsed.connection or (minor == "0" and not keep_alive) or parsed.expect
        waiting = Refusal(refusal(refused, self.may, closes, minor == "0" and not closes), closes)
        if closes:
            self.draining = True
        if self.answering:
            self.waiting.append(waiting)
        else:
            self.send_refusal(waiting, answer)
        return False

    @property
    def answering(self) -> bool:
        """Whether the server still owes (or is sending) a response: a refusal now would cut in."""
        return bool(self.waiting or self.response_head or self.until_close) or self.response_body is not None

    def send_refusal(self, waiting: Refusal, answer: list[bytes]) -> None:
        answer.append(waiting.answer)
        if waiting.closes:
            self.reason = f"the client asked to close after a refused request ({self.last_refusal})"

    def server_bytes(self, data: Chunk) -> Chunk:
        """What the server sent -> bytes for the client (queued refusals put in after the responses
        they wait for)."""
        if self.until_close or self.reason:
            return data
        pieces: list[Chunk] = []
        position = done = 0
        try:
            while position < len(data) and not self.until_close:
                if self.response_body is None:
                    position = self.read_response_head(data, position)
                else:
                    position = self.response_body.consume(data, position)
                if self.response_body is not None and self.response_body.done:
                    self.response_body = None
                    due = self.refusals_due()
                    if due:
                        pieces += [data[done:position], *due]
                        done = position
        except Violation as violation:
            self.reason = f"protocol violation from the server: {violation}"
            return data
        if not pieces:
            return data
        pieces.append(data[done:])
        return b"".join(pieces)

    def refusals_due(self) -> list[bytes]:
        """The refusals due now that a response ended: those next in line."""
        due: list[bytes] = []
        while self.waiting and not self.reason:
            waiting = self.waiting[0]
            if not isinstance(waiting, Refusal):
                break
            self.waiting.popleft()
            self.send_refusal(waiting, due)
        return due

    def read_response_head(self, data: Chunk, position: int) -> int:
        head, position = read_head(self.response_head, data, position, "response")
        if head:
            self.begin_response(head)
        return position

    def begin_response(self, head: bytes) -> None:
        """Start on the body of the response of ``head`` (none for 1xx, 204, 304 and HEAD)."""
        start, lines = split_head(head)
        status = STATUS_LINE.fullmatch(start)
        if not status:
            raise Violation(f"a status line that is not 'HTTP/1.x NNN': {start[:80]!r}")
        parsed = parse_headers(lines, status.groups())
        code = int(status.group(1))
        if code == 101:
            raise Violation("a protocol switch")
        if 100 <= code < 200:
            return  # an interim answer: the final one follows
        # The request it answers; none for a response of the server's own (a timeout, a parse error).
        answered = self.waiting.popleft() if self.waiting and isinstance(self.waiting[0], Forwarded) else None
        method = answered.method if isinstance(answered, Forwarded) else b""
        if code in (204, 304) or method == b"HEAD":
            self.response_body = Body()
        elif parsed.chunked or parsed.length is not None:
            self.response_body = Body(parsed.length or 0, parsed.chunked)
        else:
            self.until_close = True  # a body that ends with the connection: nothing can follow it
        if "close" in parsed.connection:
            self.until_close = True
            self.waiting.clear()


def metrics_filter() -> HttpFilter:
    """The filter of one connection to Triton's metrics port."""
    return HttpFilter(metrics_route, METRICS_MAY)
