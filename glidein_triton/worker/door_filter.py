"""What the front door asks of a job route's filter (:mod:`grpc_filter`, :mod:`http_filter`).

The door reads each direction into a buffer of its own and hands the filter a view of what came: a
filter passes on views (or bytes it made) and copies what it keeps for later, since the buffer is read
into again once the door has sent what the call returned.
"""

from __future__ import annotations

from typing import Protocol, Union

#: Bytes from the door's buffer (valid until the door reads again), or bytes the filter made.
Chunk = Union[bytes, memoryview]


class ConnectionFilter(Protocol):
    """One connection's filter: pure logic over bytes, called under one lock per connection."""

    refused: int
    last_refusal: str

    def client_bytes(self, data: Chunk) -> tuple[Chunk, bytes]:
        """What the client sent -> (bytes for the server now, bytes for the client now)."""

    def server_bytes(self, data: Chunk) -> Chunk:
        """What the server sent -> bytes for the client."""

    @property
    def ended(self) -> str:
        """Empty while the connection may go on; else why the door must close it now."""
