"""The HPACK decoder (glidein_triton.worker.hpack) on RFC 7541's own examples, its bounds and bad input."""

from __future__ import annotations

from fractions import Fraction

import pytest

from glidein_triton.worker import hpack

Headers = list[tuple[str, str]]

REQUEST_1: Headers = [
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
]
REQUEST_2: Headers = [*REQUEST_1, ("cache-control", "no-cache")]
REQUEST_3: Headers = [
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
]
DATE_1 = "Mon, 21 Oct 2013 20:13:21 GMT"
RESPONSE_1: Headers = [
    (":status", "302"),
    ("cache-control", "private"),
    ("date", DATE_1),
    ("location", "https://www.example.com"),
]
RESPONSE_2: Headers = [(":status", "307"), *RESPONSE_1[1:]]
RESPONSE_3: Headers = [
    (":status", "200"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
    ("location", "https://www.example.com"),
    ("content-encoding", "gzip"),
    ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
]

#: RFC 7541 Appendix C.3-C.6: (table size, [(header block, header list, table size after it), ...]).
SEQUENCES = {
    "C.3 requests": (
        4096,
        [
            ("828684410f7777772e6578616d706c652e636f6d", REQUEST_1, 57),
            ("828684be58086e6f2d6361636865", REQUEST_2, 110),
            ("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565", REQUEST_3, 164),
        ],
    ),
    "C.4 requests, Huffman": (
        4096,
        [
            ("828684418cf1e3c2e5f23a6ba0ab90f4ff", REQUEST_1, 57),
            ("828684be5886a8eb10649cbf", REQUEST_2, 110),
            ("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", REQUEST_3, 164),
        ],
    ),
    "C.5 responses (evictions)": (
        256,
        [
            (
                "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e"
                "1768747470733a2f2f7777772e6578616d706c652e636f6d",
                RESPONSE_1,
                222,
            ),
            ("4803333037c1c0bf", RESPONSE_2, 222),
            (
                "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d"
                "4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b207665"
                "7273696f6e3d31",
                RESPONSE_3,
                215,
            ),
        ],
    ),
    "C.6 responses, Huffman (evictions)": (
        256,
        [
            (
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b"
                "97c8e9ae82ae43d3",
                RESPONSE_1,
                222,
            ),
            ("4883640effc1c0bf", RESPONSE_2, 222),
            (
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdf"
                "cd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
                RESPONSE_3,
                215,
            ),
        ],
    ),
}


def text(headers: list[tuple[bytes, bytes]]) -> Headers:
    return [(name.decode(), value.decode()) for name, value in headers]


@pytest.mark.parametrize(
    ("block", "expected", "table_size"),
    [
        ("400a637573746f6d2d6b65790d637573746f6d2d686561646572", [("custom-key", "custom-header")], 55),
        ("040c2f73616d706c652f70617468", [(":path", "/sample/path")], 0),
        ("100870617373776f726406736563726574", [("password", "secret")], 0),  # never indexed
        ("82", [(":method", "GET")], 0),
    ],
    ids=["C.2.1", "C.2.2", "C.2.3", "C.2.4"],
)
def test_single_fields(block: str, expected: Headers, table_size: int) -> None:
    decoder = hpack.Decoder()
    assert text(decoder.decode(bytes.fromhex(block))) == expected
    assert decoder.size == table_size


@pytest.mark.parametrize("name", SEQUENCES)
def test_sequences_of_header_blocks_keep_the_dynamic_table(name: str) -> None:
    table_size, blocks = SEQUENCES[name]
    decoder = hpack.Decoder(table_size=table_size)
    for block, expected, size in blocks:
        assert text(decoder.decode(bytes.fromhex(block))) == expected
        assert decoder.size == size
    if table_size == 256:  # C.5.3/C.6.3: what is left after the evictions, newest first
        assert text(list(decoder.entries)) == [RESPONSE_3[5], RESPONSE_3[4], RESPONSE_3[2]]
    else:
        assert text(list(decoder.entries)) == [REQUEST_3[4], REQUEST_2[4], REQUEST_1[3]]


def test_the_huffman_code_is_appendix_b() -> None:
    lengths = hpack.CODE_LENGTHS
    assert len(lengths) == 257
    assert sum(Fraction(1, 1 << length) for length in lengths) == 1  # a complete prefix code
    codes = hpack.canonical_codes()
    for symbol, code, length in [
        (0, 0x1FF8, 13),
        (1, 0x7FFFD8, 23),
        (10, 0x3FFFFFFC, 30),
        (ord(" "), 0x14, 6),
        (ord("0"), 0x0, 5),
        (ord("a"), 0x3, 5),
        (ord("X"), 0xFC, 8),
        (ord("\\"), 0x7FFF0, 19),
        (ord("~"), 0x1FFD, 13),
        (128, 0xFFFE6, 20),
        (199, 0x1FFFFEC, 25),
        (225, 0xFFFFF3, 24),
        (249, 0xFFFFFFE, 28),
        (255, 0x3FFFFEE, 26),
        (hpack.EOS, 0x3FFFFFFF, 30),
    ]:
        assert codes[symbol] == (code, length), symbol


def huffman_encode(data: bytes) -> bytes:
    codes = hpack.canonical_codes()
    bits = length = 0
    for byte in data:
        code, size = codes[byte]
        bits, length = (bits << size) | code, length + size
    padding = -length % 8
    bits, length = (bits << padding) | ((1 << padding) - 1), length + padding
    return bits.to_bytes(length // 8, "big")


def test_every_byte_value_goes_through_huffman_and_back() -> None:
    data = bytes(range(256)) * 3
    assert hpack.huffman_decode(huffman_encode(data)) == data
    assert hpack.huffman_decode(b"") == b""


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        (b"\xff", "padding"),  # 8 bits of padding
        (b"\x18", "padding"),  # 'a' then padding of zeros
        (b"\xff\xff\xff\xff", "EOS"),  # the EOS symbol itself
    ],
)
def test_bad_huffman_strings_are_errors(encoded: bytes, problem: str) -> None:
    with pytest.raises(hpack.HpackError, match=problem):
        hpack.huffman_decode(encoded)


def test_integers_of_appendix_c1_and_their_bounds() -> None:
    assert hpack.encode_integer(10, 5) == b"\x0a"
    assert hpack.encode_integer(1337, 5) == b"\x1f\x9a\x0a"
    assert hpack.encode_integer(42, 8) == b"\x2a"
    assert hpack.decode_integer(b"\x00\x1f\x9a\x0a", 1, 5) == (1337, 4)
    for value in (0, 30, 31, 127, 128, 4096, 65535, 1 << 28):
        assert hpack.decode_integer(hpack.encode_integer(value, 5), 0, 5) == (
            value,
            len(hpack.encode_integer(value, 5)),
        )
    with pytest.raises(hpack.HpackError, match="ends inside an integer"):
        hpack.decode_integer(b"\x1f\x9a", 0, 5)
    with pytest.raises(hpack.HpackError, match="too large"):
        hpack.decode_integer(b"\x1f" + b"\xff" * 6 + b"\x01", 0, 5)


def test_dynamic_table_size_updates_are_bounded_and_come_first() -> None:
    decoder = hpack.Decoder(size_limit=1 << 16)
    decoder.decode(bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"))
    assert decoder.size == 55
    assert decoder.decode(b"\x20") == []  # size 0: the table is emptied
    assert decoder.size == 0
    assert not decoder.entries
    assert decoder.decode(hpack.encode_integer(1 << 16, 5, 0x20)) == []  # the bound itself is allowed
    assert decoder.max_size == 1 << 16
    with pytest.raises(hpack.HpackError, match="size update to 65537 bytes, over 65536"):
        decoder.decode(hpack.encode_integer((1 << 16) + 1, 5, 0x20))
    with pytest.raises(hpack.HpackError, match="after the first field"):
        decoder.decode(b"\x82\x3f\xe1\x1f")


def test_an_entry_larger_than_the_table_empties_it() -> None:
    decoder = hpack.Decoder(table_size=64)
    decoder.decode(b"\x41\x01a")  # :authority: a (43 bytes)
    assert decoder.size == 43
    decoder.decode(b"\x41\x20" + b"b" * 32)  # 74 bytes: nothing fits
    assert decoder.size == 0
    assert not decoder.entries


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (b"\x80", "index 0 is not in the table"),
        (b"\xbe", "index 62 is not in the table"),  # the dynamic table is empty
        (b"\x41\x05ab", "runs past the end"),
        (b"\x41", "before a string literal"),
        (b"\x40\x81\xff\x00", "padding"),  # a Huffman name of 8 bits of padding
        (b"\xff", "ends inside an integer"),
    ],
)
def test_malformed_header_blocks_are_errors(block: bytes, problem: str) -> None:
    with pytest.raises(hpack.HpackError, match=problem):
        hpack.Decoder().decode(block)


def test_literals_without_indexing_leave_the_table_as_it_was() -> None:
    block = hpack.literal_without_indexing(8, b"200") + hpack.literal_without_indexing(b"x-long", b"v" * 300)
    decoder = hpack.Decoder()
    assert text(decoder.decode(block)) == [(":status", "200"), ("x-long", "v" * 300)]
    assert decoder.size == 0
