"""The front door's filter for gRPC (HTTP/2 over cleartext, prior knowledge): what jobs may call.

An allow-list of methods (:data:`JOB_PATHS`): health, metadata, inference (streaming included), model
configuration, statistics and the repository index. Everything else (model load and unload, shared-memory
registration, trace and log settings, unknown paths) is refused without Triton ever getting the request
message:

- every header block the client sends is decoded (HPACK), so the filter's table stays the server's and it
  reads the ``:path`` the server reads; a refused call's header block still goes to the server unchanged
  (its table must stay in step), followed at once by RST_STREAM(CANCEL) for that stream;
- the stream's later client frames go on to the server (which discards them, and counts them for the
  connection's flow control); the server's frames for it other than header blocks are dropped (gRPC answers
  the cancelled call itself, "Unable to parse request": that header block, kept for the client's HPACK
  table, comes after the filter's answer, on a stream the client has closed, and clients ignore it);
- the client gets a trailers-only answer (``grpc-status: 7``, PERMISSION_DENIED, and why) in literals
  without indexing, so its table stays the server's too, put in the server's byte stream at a frame
  boundary only, never inside a HEADERS+CONTINUATION run, and only once the server's first frame (its
  SETTINGS) has gone to the client.

Client bytes are never held back or copied to be forwarded: the filter reads the frame headers, collects
only header block fragments and returns the bytes it was given (joined with RST_STREAM frames where a call
is refused). Server bytes are parsed for frame headers only. Pure logic over bytes, one object per
connection, called under one lock by the door's two pump threads; what it answers the client (the second
value of :meth:`GrpcFilter.client_bytes`) must reach the client in order with what
:meth:`GrpcFilter.server_bytes` returns, so both are sent to the client under that lock.
"""

from __future__ import annotations

import struct

from glidein_triton.worker import hpack
from glidein_triton.worker.door_filter import Chunk

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_SIZE = 9
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20
CANCEL = 0x8
PERMISSION_DENIED = 7
#: A header block (its fragments, padding and priority left out) and a dynamic table size at most this.
HEADER_BLOCK_LIMIT = 1 << 16
TABLE_SIZE_LIMIT = 1 << 16
#: Refused streams whose late server frames are still dropped (the oldest is forgotten beyond that).
REMEMBERED_REFUSALS = 1024
#: Refusals waiting for a boundary of the server's frames (a client that sends refused calls and reads
#: nothing): beyond that many the connection is closed, so that they cannot pile up in the door's memory.
WAITING_REFUSALS = 256
LONGEST_SHOWN_PATH = 120

INFERENCE_SERVICE = "inference.GRPCInferenceService"
JOB_METHODS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
)
HEALTH_METHODS = ("grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch")
#: The ``:path`` of every call a job may make, byte for byte (gRPC matches paths exactly).
JOB_PATHS = frozenset(
    [f"/{INFERENCE_SERVICE}/{method}".encode() for method in JOB_METHODS]
    + [f"/{method}".encode() for method in HEALTH_METHODS]
)
WHAT_JOBS_GET = (
    "jobs get health, inference, metadata, model configuration, statistics and the repository index"
)

FRAME = struct.Struct(">HBBBI")  # length (24 bits: 16 + 8), type, flags, stream (31 bits)


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame."""
    length = len(payload)
    return FRAME.pack(length >> 8, length & 0xFF, kind, flags, stream) + payload


def reset(stream: int) -> bytes:
    """RST_STREAM(CANCEL) for ``stream``."""
    return frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))


def percent_encoded(text: str) -> bytes:
    """``text`` as gRPC's ``grpc-message`` carries it: UTF-8, other than printable ASCII and ``%`` as %XX."""
    return b"".join(
        bytes([byte]) if 0x20 <= byte <= 0x7E and byte != 0x25 else b"%%%02X" % byte for byte in text.encode()
    )


def shown(path: bytes) -> str:
    """A called path as it may appear in a message and a log line: the method name of Triton's service,
    else the path, printable and cut short."""
    prefix = f"/{INFERENCE_SERVICE}/".encode()
    name = path[len(prefix) :] if path.startswith(prefix) else path
    text = name.decode("ascii", "backslashreplace")
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text) or "(no method)"
    return text if len(text) <= LONGEST_SHOWN_PATH else text[:LONGEST_SHOWN_PATH] + "..."


def refusal(stream: int, method: str) -> bytes:
    """The trailers-only answer refusing a call: a HEADERS frame ending the stream, in literals without
    indexing (the client's HPACK table is left as it was)."""
    message = f"glidein-triton: {method} is not allowed for jobs; {WHAT_JOBS_GET}"
    block = b"".join(
        [
            hpack.literal_without_indexing(8, b"200"),  # :status
            hpack.literal_without_indexing(31, b"application/grpc"),  # content-type
            hpack.literal_without_indexing(b"grpc-status", str(PERMISSION_DENIED).encode()),
            hpack.literal_without_indexing(b"grpc-message", percent_encoded(message)),
        ]
    )
    return frame(HEADERS, END_STREAM | END_HEADERS, stream, block)


class GrpcFilter:
    """The door's filter for one gRPC connection of a job (see the module's docstring)."""

    def __init__(self) -> None:
        self.refused = 0
        self.last_refusal = ""
        self._ended = ""
        self.decoder = hpack.Decoder(TABLE_SIZE_LIMIT)
        # client -> server
        self.preface_left = PREFACE
        self.client_head = b""  # a frame header split between reads
        self.client_left = 0  # payload bytes of the current frame still to come
        self.collecting: bytearray | None = None  # the current HEADERS/CONTINUATION payload
        self.collected_kind = self.collected_flags = 0
        self.block = bytearray()  # the header block being put together
        self.block_stream = 0  # its stream (0: no header block open)
        self.block_opens = False  # whether it is the first of its stream (the call's request headers)
        self.highest_stream = 0
        # server -> client
        self.server_head = b""
        self.server_left = 0
        self.server_dropping = False
        self.server_in_block = False  # inside a HEADERS/PUSH_PROMISE + CONTINUATION run
        self.server_started = False  # its first frame has gone to the client
        self.queued: list[bytes] = []  # refusals waiting for a frame boundary
        self.refused_streams: dict[int, None] = {}

    @property
    def ended(self) -> str:
        return self._ended

    def end(self, why: str) -> None:
        if not self._ended:
            self._ended = f"gRPC connection closed: {why}"

    # client -> server

    def client_bytes(self, data: Chunk) -> tuple[Chunk, bytes]:  # noqa: PLR0912 (one loop over frames, no call per DATA frame)
        if self._ended:
            return b"", b""
        position, size = 0, len(data)
        if self.preface_left:
            position = min(len(self.preface_left), size)
            if data[:position] != self.preface_left[:position]:
                self.end("the client did not start with the HTTP/2 connection preface")
                return b"", b""
            self.preface_left = self.preface_left[position:]
        resets: list[tuple[int, bytes]] = []  # (after this many bytes of data, RST_STREAM)
        while position < size:
            if self.client_left:
                take = min(self.client_left, size - position)
                if self.collecting is not None:
                    self.collecting += data[position : position + take]
                position += take
                self.client_left -= take
                if self.client_left:
                    break
            else:
                need = FRAME_HEADER_SIZE - len(self.client_head)
                if self.client_head or size - position < need:
                    self.client_head += data[position : position + need]
                    position += min(need, size - position)
                    if len(self.client_head) < FRAME_HEADER_SIZE:
                        break
                    header: Chunk = self.client_head
                    self.client_head = b""
                else:
                    header = data[position : position + FRAME_HEADER_SIZE]
                    position += FRAME_HEADER_SIZE
                self.client_frame(header)
                if self._ended:
                    return b"", b""
                if self.client_left:
                    continue
            if self.collecting is not None:
                stream = self.header_fragment_done()
                if stream:
                    resets.append((position, reset(stream)))
            if self._ended:
                return b"", b""
        answer = b""
        if self.queued and self.at_server_boundary():
            answer = b"".join(self.queued)
            self.queued.clear()
        if not resets:
            return data, answer
        pieces: list[bytes | memoryview] = []
        view, start = memoryview(data), 0
        for cut, frame_bytes in resets:
            pieces += [view[start:cut], frame_bytes]
            start = cut
        pieces.append(view[start:])
        return b"".join(pieces), answer

    def client_frame(self, header: Chunk) -> None:
        """Check one client frame header; set up collecting its payload if it carries a header block."""
        high, low, kind, flags, stream = FRAME.unpack(header)
        length = (high << 8) | low
        stream &= 0x7FFFFFFF
        self.client_left = length
        if self.block_stream and (kind != CONTINUATION or stream != self.block_stream):
            self.end(f"a frame of type {kind} inside the header block of stream {self.block_stream}")
        elif kind == HEADERS:
            if not stream or not stream & 1:
                self.end(f"HEADERS on stream {stream}, which a client may not open")
            self.block_stream = stream
            self.block_opens = stream > self.highest_stream
            self.highest_stream = max(self.highest_stream, stream)
        elif kind == CONTINUATION and not self.block_stream:
            self.end("CONTINUATION outside a header block")
        elif kind == PUSH_PROMISE:
            self.end("PUSH_PROMISE from the client")
        if kind in (HEADERS, CONTINUATION):
            if len(self.block) + length > HEADER_BLOCK_LIMIT + 256 + 6:  # room for padding and priority
                self.end(f"a header block of more than {HEADER_BLOCK_LIMIT} bytes")
            self.collecting = bytearray()
            self.collected_kind, self.collected_flags = kind, flags

    def header_fragment_done(self) -> int:
        """One HEADERS/CONTINUATION frame is in; at the end of its block, the stream to reset (0: none)."""
        payload, flags = self.collecting or b"", self.collected_flags
        self.collecting = None
        fragment = self.fragment(payload, flags) if self.collected_kind == HEADERS else payload
        self.block += fragment
        if len(self.block) > HEADER_BLOCK_LIMIT:
            self.end(f"a header block of more than {HEADER_BLOCK_LIMIT} bytes")
        if self._ended or not flags & END_HEADERS:
            return 0
        stream, opens, block = self.block_stream, self.block_opens, bytes(self.block)
        self.block_stream, self.block = 0, bytearray()
        try:
            headers = self.decoder.decode(block)
        except hpack.HpackError as error:
            self.end(f"an undecodable header block: {error}")
            return 0
        paths = [value for name, value in headers if name == b":path"]
        if not paths and not opens:
            return 0  # trailers (a block naming a path on a stream that is not new is checked all the same)
        if len(paths) == 1 and paths[0] in JOB_PATHS:
            return 0
        self.refuse(stream, shown(paths[0]) if len(paths) == 1 else f"a call with {len(paths)} :path fields")
        return stream

    def fragment(self, payload: bytes | bytearray, flags: int) -> bytes | bytearray:
        """The header block fragment of a HEADERS frame's payload: its padding and priority left out."""
        start, end = 0, len(payload)
        if flags & PADDED:
            if not payload:
                self.end("a padded HEADERS frame without its pad length")
                return b""
            start, end = 1, end - payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if start > end:
            self.end("a HEADERS frame whose padding and priority are longer than the frame")
            return b""
        return payload[start:end]

    def refuse(self, stream: int, method: str) -> None:
        self.refused += 1
        self.last_refusal = f"refused {method} on gRPC stream {stream}: not a call for jobs"
        self.refused_streams[stream] = None
        if len(self.refused_streams) > REMEMBERED_REFUSALS:
            del self.refused_streams[next(iter(self.refused_streams))]
        self.queued.append(refusal(stream, method))
        if len(self.queued) > WAITING_REFUSALS:
            self.end(f"more than {WAITING_REFUSALS} refused calls waiting for their answer")

    # server -> client

    def at_server_boundary(self) -> bool:
        return (
            self.server_started and not self.server_in_block and not self.server_left and not self.server_head
        )

    def server_bytes(self, data: Chunk) -> Chunk:  # noqa: PLR0912 (one loop over frames, no call per DATA frame)
        if self._ended:
            return b""
        if self.server_head:
            data, self.server_head = self.server_head + data, b""
        position, size, kept = 0, len(data), 0  # data[kept:position] is still to be passed on
        view = memoryview(data)
        pieces: list[bytes | memoryview] = []
        while position < size:
            if self.server_left:
                take = min(self.server_left, size - position)
                if self.server_dropping:
                    if position > kept:
                        pieces.append(view[kept:position])
                    kept = position + take
                position += take
                self.server_left -= take
                if self.server_left:
                    break
            else:
                if size - position < FRAME_HEADER_SIZE:
                    self.server_head = bytes(data[position:])  # the door reads into data again
                    size = position  # held back until the rest of the header comes
                    break
                high, low, kind, flags, stream = FRAME.unpack_from(data, position)
                stream &= 0x7FFFFFFF
                self.server_left = (high << 8) | low
                if kind in (HEADERS, PUSH_PROMISE, CONTINUATION):
                    self.server_in_block = not flags & END_HEADERS
                    self.server_dropping = False
                else:
                    self.server_dropping = stream in self.refused_streams
                if self.server_dropping:
                    if position > kept:
                        pieces.append(view[kept:position])
                    kept = position + FRAME_HEADER_SIZE
                position += FRAME_HEADER_SIZE
                if self.server_left:
                    continue
            self.server_started = True  # a frame has ended here
            if self.queued and not self.server_in_block:
                pieces += [view[kept:position], *self.queued]
                kept = position
                self.queued.clear()
        if kept == 0 and not pieces and size == len(data):
            return data
        if size > kept:
            pieces.append(view[kept:size])
        return b"".join(pieces)
