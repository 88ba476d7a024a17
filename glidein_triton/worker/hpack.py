"""An HPACK decoder (RFC 7541): what an HTTP/2 header block says, with the dynamic table kept in step.

The gRPC filter of the front door decodes every header block a client sends, so that its table stays the
same as the server's and it reads the ``:path`` the server will read. Strict: anything RFC 7541 calls a
decoding error raises :class:`HpackError` (the connection is then beyond repair and is closed).
"""

from __future__ import annotations

from collections import deque

#: RFC 7541 Appendix A: index 1..61 -> (name, value).
STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode(), value.encode())
    for name, value in (
        (":authority", ""),
        (":method", "GET"),
        (":method", "POST"),
        (":path", "/"),
        (":path", "/index.html"),
        (":scheme", "http"),
        (":scheme", "https"),
        (":status", "200"),
        (":status", "204"),
        (":status", "206"),
        (":status", "304"),
        (":status", "400"),
        (":status", "404"),
        (":status", "500"),
        ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"),
        ("accept-language", ""),
        ("accept-ranges", ""),
        ("accept", ""),
        ("access-control-allow-origin", ""),
        ("age", ""),
        ("allow", ""),
        ("authorization", ""),
        ("cache-control", ""),
        ("content-disposition", ""),
        ("content-encoding", ""),
        ("content-language", ""),
        ("content-length", ""),
        ("content-location", ""),
        ("content-range", ""),
        ("content-type", ""),
        ("cookie", ""),
        ("date", ""),
        ("etag", ""),
        ("expect", ""),
        ("expires", ""),
        ("from", ""),
        ("host", ""),
        ("if-match", ""),
        ("if-modified-since", ""),
        ("if-none-match", ""),
        ("if-range", ""),
        ("if-unmodified-since", ""),
        ("last-modified", ""),
        ("link", ""),
        ("location", ""),
        ("max-forwards", ""),
        ("proxy-authenticate", ""),
        ("proxy-authorization", ""),
        ("range", ""),
        ("referer", ""),
        ("refresh", ""),
        ("retry-after", ""),
        ("server", ""),
        ("set-cookie", ""),
        ("strict-transport-security", ""),
        ("transfer-encoding", ""),
        ("user-agent", ""),
        ("vary", ""),
        ("via", ""),
        ("www-authenticate", ""),
    )
)

#: RFC 7541 Appendix B, the length in bits of the code of each symbol 0..255 and EOS (256). The code is
#: canonical (codes of one length are consecutive, in symbol order), so the lengths give the codes.
CODE_LENGTHS: tuple[int, ...] = (
    (13, 23)
    + (28,) * 7
    + (24, 30, 28, 28, 30)
    + (28,) * 8
    + (30,)
    + (28,) * 9
    # 32..63: ' ' ! " # $ % & ' ( ) * + , - . / 0-2 3-9 : ; < = > ?
    + (6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6)
    + (5,) * 3
    + (6,) * 7
    + (7, 8, 15, 6, 12, 10)
    # 64..96: @ A B-W X Y Z [ \ ] ^ _ `
    + (13, 6)
    + (7,) * 22
    + (8, 7, 8, 13, 19, 13, 14, 6, 15)
    # 97..127: a-z { | } ~ DEL
    + (5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6)
    + (7,) * 5
    + (15, 11, 14, 13, 28)
    # 128..255
    + (20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23)
    + (24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24)
    + (22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23)
    + (21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23)
    + (26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25)
    + (19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27)
    + (20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23)
    + (26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26)
    + (30,)
)
EOS = 256
ENTRY_OVERHEAD = 32
DEFAULT_TABLE_SIZE = 4096


class HpackError(ValueError):
    """A header block that RFC 7541 calls a decoding error, or one over the decoder's bounds."""


def canonical_codes(lengths: tuple[int, ...] = CODE_LENGTHS) -> list[tuple[int, int]]:
    """(code, length) of each symbol of a canonical code with these lengths."""
    order = sorted(range(len(lengths)), key=lambda symbol: (lengths[symbol], symbol))
    codes = [(0, 0)] * len(lengths)
    code, previous = 0, lengths[order[0]]
    for symbol in order:
        code <<= lengths[symbol] - previous
        previous = lengths[symbol]
        codes[symbol] = (code, previous)
        code += 1
    return codes


def decoding_table(lengths: tuple[int, ...] = CODE_LENGTHS) -> dict[tuple[int, int], int]:
    """(length, code) -> symbol."""
    return {(length, code): symbol for symbol, (code, length) in enumerate(canonical_codes(lengths))}


HUFFMAN_SYMBOLS = decoding_table()
LONGEST_CODE = max(CODE_LENGTHS)


def huffman_decode(data: bytes) -> bytes:
    """A Huffman-coded string literal (RFC 7541 5.2): padding of at most 7 bits, all ones; no EOS."""
    decoded = bytearray()
    symbols = HUFFMAN_SYMBOLS
    code = length = 0
    for byte in data:
        for shift in (7, 6, 5, 4, 3, 2, 1, 0):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            symbol = symbols.get((length, code))
            if symbol is not None:
                if symbol == EOS:
                    raise HpackError("a Huffman-coded string holds the EOS symbol")
                decoded.append(symbol)
                code = length = 0
            elif length == LONGEST_CODE:
                raise HpackError("a Huffman-coded string holds no valid code")
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("a Huffman-coded string ends in padding that is not a prefix of EOS")
    return bytes(decoded)


def decode_integer(block: bytes, position: int, prefix: int) -> tuple[int, int]:
    """The integer (RFC 7541 5.1) of ``prefix`` bits at ``block[position]``: (value, next position)."""
    if position >= len(block):
        raise HpackError("a header block ends inside an integer")
    limit = (1 << prefix) - 1
    value = block[position] & limit
    position += 1
    if value < limit:
        return value, position
    shift = 0
    while True:
        if position >= len(block):
            raise HpackError("a header block ends inside an integer")
        byte = block[position]
        position += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position
        if shift > 28:  # more than 2**32: no header block of a sane peer holds such an integer
            raise HpackError("an integer in a header block is too large")


class Decoder:
    """One direction's HPACK decoder. ``size_limit`` bounds the dynamic table size the encoder may ask for
    (an update above it is an error, as it is above the decoder's SETTINGS_HEADER_TABLE_SIZE)."""

    def __init__(self, size_limit: int = 1 << 16, table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self.size_limit = size_limit
        self.max_size = min(table_size, size_limit)
        self.size = 0
        self.entries: deque[tuple[bytes, bytes]] = deque()  # newest first

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """The header list of one complete header block (the table is updated as the block says)."""
        headers: list[tuple[bytes, bytes]] = []
        position, end = 0, len(block)
        updates_allowed = True
        while position < end:
            byte = block[position]
            if byte & 0x80:  # indexed header field
                index, position = decode_integer(block, position, 7)
                headers.append(self.entry(index))
            elif byte & 0x40:  # literal with incremental indexing
                name, value, position = self.literal(block, position, 6)
                headers.append((name, value))
                self.add(name, value)
            elif byte & 0x20:  # dynamic table size update
                if not updates_allowed:
                    raise HpackError("a dynamic table size update after the first field of a header block")
                size, position = decode_integer(block, position, 5)
                if size > self.size_limit:
                    raise HpackError(f"a dynamic table size update to {size} bytes, over {self.size_limit}")
                self.max_size = size
                self.evict(0)
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                name, value, position = self.literal(block, position, 4)
                headers.append((name, value))
            updates_allowed = False
        return headers

    def literal(self, block: bytes, position: int, prefix: int) -> tuple[bytes, bytes, int]:
        index, position = decode_integer(block, position, prefix)
        if index:
            name = self.entry(index)[0]
        else:
            name, position = self.string(block, position)
        value, position = self.string(block, position)
        return name, value, position

    @staticmethod
    def string(block: bytes, position: int) -> tuple[bytes, int]:
        if position >= len(block):
            raise HpackError("a header block ends before a string literal")
        huffman = block[position] & 0x80
        length, position = decode_integer(block, position, 7)
        end = position + length
        if end > len(block):
            raise HpackError("a string literal runs past the end of its header block")
        raw = block[position:end]
        return (huffman_decode(raw) if huffman else raw), end

    def entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if index == 0 or dynamic >= len(self.entries):
            raise HpackError(f"header table index {index} is not in the table")
        return self.entries[dynamic]

    def add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + ENTRY_OVERHEAD
        self.evict(size)
        if size <= self.max_size:  # a larger entry empties the table and is not added (RFC 7541 4.4)
            self.entries.appendleft((name, value))
            self.size += size

    def evict(self, room: int) -> None:
        """Drop the oldest entries until ``room`` more bytes fit."""
        while self.entries and self.size + room > self.max_size:
            name, value = self.entries.pop()
            self.size -= len(name) + len(value) + ENTRY_OVERHEAD


def encode_integer(value: int, prefix: int, first: int = 0) -> bytes:
    """``value`` as an RFC 7541 5.1 integer of ``prefix`` bits (``first``: the first byte's other bits)."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([first | value])
    encoded = bytearray([first | limit])
    value -= limit
    while value >= 0x80:
        encoded.append((value & 0x7F) | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def literal_without_indexing(name: bytes | int, value: bytes) -> bytes:
    """One field as a literal without indexing (RFC 7541 6.2.2), plain strings: it leaves the peer's
    dynamic table as it was. ``name`` is a static table index or the name itself."""
    if isinstance(name, int):
        encoded = encode_integer(name, 4)
    else:
        encoded = b"\x00" + encode_integer(len(name), 7) + name
    return encoded + encode_integer(len(value), 7) + value
