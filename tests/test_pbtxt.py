"""The protobuf text format parser that reads config.pbtxt as Triton does: the grammar, and refusals that
name the line and column."""

from __future__ import annotations

import re

import pytest

from glidein_triton.worker.pbtxt import Message, Scalar, TextFormatError, parse


def flat(message: Message) -> list[tuple[str, str]]:
    """(field, value) of every scalar, depth first; nested messages as "{"."""
    return [(name, value.text if isinstance(value, Scalar) else "{") for name, value in message.walk()]


def test_fields_on_one_line_are_all_read() -> None:
    config = parse('name: "m" platform: "onnxruntime_onnx" runtime: "evil.bin"\n')
    assert config.names() == ["name", "platform", "runtime"]
    assert config.strings("runtime") == ["evil.bin"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("backend: 'python'", "python"),
        ('backend: "py" "thon"', "python"),
        ("backend: 'py'\n  # a comment between the parts\n 'thon'", "python"),
        (r'backend: "\x70ython"', "python"),
        (r'backend: "\160ython"', "python"),
        (r'backend: "\u0070ython"', "python"),
        (r'backend: "\U00000070ython"', "python"),
        (r"backend: 'it\'s'", "it's"),
        (r'backend: "a\tb\\c\"d\?"', 'a\tb\\c"d?'),
        ('backend: "caf\xc3\xa9"'.encode("latin-1").decode("utf-8"), "café"),
        (r'backend: "caf\303\251"', "café"),
    ],
)
def test_strings_quotes_escapes_and_concatenation(text: str, value: str) -> None:
    assert parse(text).strings("backend") == [value]


def test_messages_lists_separators_and_repeats() -> None:
    config = parse(
        """
        input [ { name: "a", dims: [ -1, 3 ] }, < name: 'b' dims: 0x10 > ];
        output: { name: "y"; dims: [1] },
        parameters { key: "K" value: { string_value: "v" } }
        parameters: < key: "L", value < string_value: "w" > >
        instance_group [ ]
        optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" } ] } }
        version_policy: { all { } }
        max_batch_size: -8 dynamic_batching { max_queue_delay_microseconds: 1.5e3 }
        sequence_batching { control_input { control { fp32_false_true: [ 0, 1.0f, -inf ] } } }
        """
    )
    assert config.names() == [
        "input",
        "input",
        "output",
        "parameters",
        "parameters",
        "optimization",
        "version_policy",
        "max_batch_size",
        "dynamic_batching",
        "sequence_batching",
    ]
    assert ("dims", "-1") in flat(config)
    assert ("dims", "0x10") in flat(config)
    assert ("fp32_false_true", "-inf") in flat(config)
    assert ("max_queue_delay_microseconds", "1.5e3") in flat(config)
    keys = [entry.strings("key") for entry in config.values("parameters") if isinstance(entry, Message)]
    assert keys == [["K"], ["L"]]
    assert ("string_value", "w") in flat(config)
    assert ("name", "tensorrt") in flat(config)


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ('backend: "python', 1, 10, "unexpected character '\"'"),
        ("backend: 'py\nthon'", 1, 10, "unexpected character"),
        ('backend: "p\\qthon"', 1, 12, "invalid escape '\\\\q'"),
        ("backend: 'a\\xZZ'", 1, 12, "invalid escape"),
        ("backend: '\\uD800'", 1, 11, "invalid Unicode escape"),
        ("backend: '\\377'", 1, 10, "not valid UTF-8"),
        ("\n  [ext]: 1", 2, 3, "expected a field name"),
        ("\n  [type.example/x] {}", 2, 8, "unexpected character '.'"),
        ('name: "m"\nbackend "python"', 2, 9, "expected ':', '{' or '<'"),
        ("input { name: 'a' ", 1, 19, "expected a field name or '}', found the end of the file"),
        ("input { name: 'a' >", 1, 19, "expected a field name or '}'"),
        ("input < name: 'a' }", 1, 19, "expected a field name or '>'"),
        ("dims: [1 2]", 1, 10, "expected ',' or ']'"),
        ("input [ name: 'a' ]", 1, 9, "expected a message in a list without ':'"),
        ("max_batch_size: 8abc", 1, 17, "malformed number"),
        ("max_batch_size: 1.2.3", 1, 17, "malformed number"),
        ("max_batch_size: - 'x'", 1, 19, "expected a number after '-'"),
        ("backend: }", 1, 10, "expected a value"),
        ('backend: "x" @', 1, 14, "unexpected character '@'"),
        ("name: {" * 102 + "}" * 102, 1, 708, "nested deeper than 100"),
    ],
)
def test_what_is_not_the_text_format_is_refused_with_its_place(
    text: str, line: int, column: int, problem: str
) -> None:
    with pytest.raises(
        TextFormatError, match=f"^line {line}, column {column}: .*{re.escape(problem)}"
    ) as caught:
        parse(text)
    assert (caught.value.line, caught.value.column) == (line, column)


def test_comments_and_empty_text() -> None:
    assert parse("").fields == []
    assert parse("# only a comment\n\n").fields == []
    assert parse('backend: "onnxruntime" # runtime: "evil"\n').names() == ["backend"]
