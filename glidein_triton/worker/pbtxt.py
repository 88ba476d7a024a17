"""The protobuf text format, as Triton reads ``config.pbtxt`` (``google::protobuf::TextFormat``).

A parser of the grammar without the schema: a :class:`Message` is its fields in order, each value a
:class:`Scalar` or a nested :class:`Message`, so the job-model policy (:mod:`job_policy`) decides on what
Triton will read, whatever the layout of the text. The grammar, from protobuf's text format specification:

* tokens: identifiers ``[A-Za-z_][A-Za-z0-9_]*``; numbers (decimal, ``0x`` hex, floats with exponent and an
  ``f`` suffix; ``-`` before a number or an identifier such as ``inf``); strings in single or double quotes
  with C escapes (``\\n``, ``\\'``, octal ``\\NNN``, hex ``\\xHH``, ``\\uXXXX``, ``\\UXXXXXXXX``), adjacent
  strings concatenated; ``#`` comments to the end of the line; whitespace anywhere between tokens;
* a field is ``name: scalar``, ``name: [scalar, ...]``, or a message ``name {...}`` / ``name <...>`` with an
  optional ``:``, or a list of messages ``name [{...}, ...]``; a ``,`` or ``;`` may follow each field;
* a field may repeat (repeated fields and map entries).

Anything else (extension or ``Any`` names in ``[...]``, a stray character, an unterminated string or
message, an unknown escape, invalid UTF-8, nesting deeper than protobuf's limit of 100) is a
:class:`TextFormatError` naming the line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Union

    Value = Union["Scalar", "Message"]

#: protobuf's default recursion limit for text and binary parsing
MAX_DEPTH = 100
TOKEN = re.compile(
    r"""(?P<space>[ \t\n\v\f\r]+)
    |(?P<comment>\#[^\n]*)
    |(?P<number>(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?))
    |(?P<identifier>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<string>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*')
    |(?P<symbol>[{}<>\[\]:,;\-])""",
    re.VERBOSE,
)
ESCAPE = re.compile(
    r"\\(?:([abfnrtv\\'\"?])|([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8}))"
)
SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
SIMPLE_ESCAPES.update({"\\": 92, "'": 39, '"': 34, "?": 63})
CLOSING = {"{": "}", "<": ">"}


class TextFormatError(ValueError):
    """Text that protobuf's text format parser would refuse (or this one does), with its place."""

    def __init__(self, line: int, column: int, problem: str) -> None:
        super().__init__(f"line {line}, column {column}: {problem}")
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Token:
    kind: str  # number, identifier, string, symbol, end
    text: str  # the source text (strings: with their quotes)
    line: int
    column: int


@dataclass(frozen=True)
class Scalar:
    """A scalar value: ``kind`` is string (``text`` decoded and concatenated), number or identifier
    (``text`` as written, with its ``-``)."""

    kind: str
    text: str
    line: int


class Message:
    """The fields of one message in the order written; a name may occur more than once."""

    def __init__(self, line: int = 1) -> None:
        self.line = line
        self.fields: list[tuple[str, Value]] = []

    def values(self, name: str) -> list[Value]:
        return [value for field, value in self.fields if field == name]

    def names(self) -> list[str]:
        return [field for field, _ in self.fields]

    def strings(self, name: str) -> list[str]:
        """The values of ``name`` that are strings (other kinds are left to the caller's checks)."""
        values = self.values(name)
        return [value.text for value in values if isinstance(value, Scalar) and value.kind == "string"]

    def walk(self) -> Iterator[tuple[str, Value]]:
        """Every (field name, value) of this message and of the messages in it, depth first."""
        for name, value in self.fields:
            yield name, value
            if isinstance(value, Message):
                yield from value.walk()


def tokens(text: str) -> list[Token]:
    found = []
    line, line_start, position = 1, 0, 0
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match:
            raise TextFormatError(line, position - line_start + 1, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        value = match.group()
        end = match.end()
        if kind == "number" and end < len(text) and (text[end].isalnum() or text[end] in "_."):
            raise TextFormatError(line, position - line_start + 1, f"malformed number {value + text[end]!r}")
        if kind not in ("space", "comment"):
            found.append(Token(kind, value, line, position - line_start + 1))
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = position + value.rindex("\n") + 1
        position = end
    found.append(Token("end", "", line, position - line_start + 1))
    return found


def decode(token: Token) -> str:
    """The value of a string token: its escapes decoded (to bytes), then read as UTF-8."""
    body = token.text[1:-1]
    data = bytearray()
    position = 0
    while position < len(body):
        if body[position] != "\\":
            data += body[position].encode()
            position += 1
            continue
        match = ESCAPE.match(body, position)
        if not match:
            raise TextFormatError(
                token.line, token.column + position + 1, f"invalid escape {body[position : position + 2]!r}"
            )
        simple, octal, hexadecimal, short, long = match.groups()
        if simple:
            data.append(SIMPLE_ESCAPES[simple])
        elif octal or hexadecimal:
            data.append(int(octal, 8) & 0xFF if octal else int(hexadecimal, 16))
        else:
            code = int(short or long, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise TextFormatError(token.line, token.column + position + 1, "invalid Unicode escape")
            data += chr(code).encode()
        position = match.end()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextFormatError(token.line, token.column, "a string that is not valid UTF-8") from error


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokens(text)
        self.position = 0

    @property
    def next(self) -> Token:
        return self.tokens[self.position]

    def take(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def fail(self, problem: str, token: Token | None = None) -> TextFormatError:
        token = token or self.next
        shown = repr(token.text) if token.kind != "end" else "the end of the file"
        return TextFormatError(token.line, token.column, f"{problem}, found {shown}")

    def accept(self, symbol: str) -> bool:
        if self.next.kind == "symbol" and self.next.text == symbol:
            self.position += 1
            return True
        return False

    def message(self, closing: str, depth: int) -> Message:
        """Fields up to ``closing`` ("" for the end of the file), which is consumed."""
        if depth > MAX_DEPTH:
            raise self.fail(f"messages nested deeper than {MAX_DEPTH}")
        result = Message(self.next.line)
        while True:
            token = self.next
            if token.kind == ("symbol" if closing else "end") and token.text == closing:
                self.take()
                return result
            if token.kind != "identifier":
                expected = f"a field name or {closing!r}" if closing else "a field name"
                raise self.fail(f"expected {expected}")
            self.take()
            colon = self.accept(":")
            for value in self.field_values(colon, depth):
                result.fields.append((token.text, value))
            if not self.accept(","):
                self.accept(";")

    def field_values(self, colon: bool, depth: int) -> list[Value]:
        token = self.next
        if token.kind == "symbol" and token.text in CLOSING:
            self.take()
            return [self.message(CLOSING[token.text], depth + 1)]
        if token.kind == "symbol" and token.text == "[":
            self.take()
            values: list[Value] = []
            if self.accept("]"):
                return values
            while True:
                element = self.next
                if element.kind == "symbol" and element.text in CLOSING:
                    self.take()
                    values.append(self.message(CLOSING[element.text], depth + 1))
                elif colon:
                    values.append(self.scalar())
                else:
                    raise self.fail("expected a message in a list without ':'")
                if self.accept("]"):
                    return values
                if not self.accept(","):
                    raise self.fail("expected ',' or ']'")
        if not colon:
            raise self.fail("expected ':', '{' or '<' after a field name")
        return [self.scalar()]

    def scalar(self) -> Scalar:
        token = self.take()
        if token.kind == "string":
            text = decode(token)
            while self.next.kind == "string":
                text += decode(self.take())
            return Scalar("string", text, token.line)
        if token.kind == "symbol" and token.text == "-":
            value = self.take()
            if value.kind in ("number", "identifier"):
                return Scalar(value.kind, "-" + value.text, token.line)
            raise self.fail("expected a number after '-'", value)
        if token.kind in ("number", "identifier"):
            return Scalar(token.kind, token.text, token.line)
        raise self.fail("expected a value", token)


def parse(text: str) -> Message:
    """The message in ``text``; :class:`TextFormatError` when it is not the text format."""
    return Parser(text).message("", 0)
