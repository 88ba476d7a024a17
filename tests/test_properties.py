"""Property-based tests (hypothesis): glidein_config reading and writing, SINGULARITY_IMAGES_DICT, the
settings validation and the XML patchers never crash, never lose another key, and are idempotent.

Each property is bounded (max_examples, no deadline: the writer runs bash) so the unit suite stays fast.
The writer runs GlideinWMS's real add_config_line.source when GLIDEINWMS_WEB_BASE is set.
"""

from __future__ import annotations

import difflib
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.operator import factory_cli, frontend_cli, payload
from glidein_triton.operator.factory_patch import FactoryOptions
from glidein_triton.operator.frontend_patch import SERVER_KEY, FrontendOptions
from glidein_triton.operator.xmlpatch.command import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, Patched, patch_file
from glidein_triton.operator.xmlpatch.source import PatchError
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.glidein_config import CondorVar, GlideinConfig, parse_glidein_config, publish
from glidein_triton.worker.images import images_dict
from glidein_triton.worker.settings import DEFAULTS, Settings

FAST = settings(max_examples=150, deadline=None)
#: The writer starts bash (and GlideinWMS's helper) for every example.
SLOW = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
#: A glidein_config value: one line of any text an argument can carry (no NUL, no newline, no surrogate).
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n"), max_size=40)
#: Lines that are not KEY value lines: no space, or empty.
JUNK_LINES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n "), max_size=20)


def config_text(lines: list[tuple[str, str] | str], ending: str = "\n") -> str:
    return "\n".join(line if isinstance(line, str) else f"{line[0]} {line[1]}" for line in lines) + ending


@FAST
@given(st.text())
def test_reading_any_text_never_fails(text: str) -> None:
    values = parse_glidein_config(text)
    assert all(" " not in key and "\n" not in key and key for key in values)
    assert all("\n" not in value for value in values.values())


@FAST
@given(st.lists(st.one_of(st.tuples(KEYS, VALUES), JUNK_LINES), max_size=12), st.sampled_from(["\n", ""]))
def test_the_last_line_of_a_key_wins_and_the_value_is_the_rest_of_the_line(
    lines: list[tuple[str, str] | str], ending: str
) -> None:
    expected = {line[0]: line[1] for line in lines if isinstance(line, tuple)}
    assert parse_glidein_config(config_text(lines, ending)) == expected


@FAST
@given(st.binary(max_size=200))
def test_reading_any_file_never_fails(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("config") / "glidein_config"
    path.write_bytes(data)
    config = GlideinConfig.read(path)
    assert set(config) == set(parse_glidein_config(data.decode("utf-8", errors="surrogateescape")))


@pytest.fixture(scope="module")
def glidein(tmp_path_factory: pytest.TempPathFactory) -> SimulatedGlidein:
    """One laid-out glidein whose glidein_config and condor_vars.lst each example rewrites."""
    return SimulatedGlidein(tmp_path_factory.mktemp("writer") / "glidein").layout()


#: GLIDEINWMS_WEB_BASE: GlideinWMS's own add_config_line.source writes, not the test double.
REAL_HELPERS = bool(os.environ.get("GLIDEINWMS_WEB_BASE"))
CONDOR_NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,12}", fullmatch=True)


@SLOW
@given(
    before=st.lists(st.tuples(KEYS, VALUES), max_size=8),
    ending=st.sampled_from(["\n", ""]),
    written=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3),
    other_vars=st.lists(CONDOR_NAMES, max_size=4, unique=True),
    var=CONDOR_NAMES,
)
@example(before=[("A", "x y")], ending="", written=[("B", " two  words\t")], other_vars=["A_B"], var="A")
@example(before=[("K", "a.b")], ending="\n", written=[("K", "a*b")], other_vars=[], var="K")
@example(before=[("R", "x\ry")], ending="\n", written=[("A", "\r")], other_vars=[], var="A")
def test_writing_keys_never_loses_or_corrupts_another(
    glidein: SimulatedGlidein,
    before: list[tuple[str, str]],
    ending: str,
    written: list[tuple[str, str]],
    other_vars: list[str],
    var: str,
) -> None:
    helpers = {key: glidein.config()[key] for key in ("ADD_CONFIG_LINE_SOURCE", "CONDOR_VARS_FILE")}
    assume(not {key for key, _ in before + written} & set(helpers))
    glidein.config_path.write_text(config_text([*helpers.items(), *before], ending))
    condor_vars = Path(helpers["CONDOR_VARS_FILE"])
    others = [f"{name} S - + N Y -" for name in other_vars if name != var]
    condor_vars.write_text("".join(f"{line}\n" for line in others))
    if REAL_HELPERS:
        # GlideinWMS's gconfig_add reads the new line as a regular expression (grep -q "^KEY VALUE$").
        assume(not any(set(value) & set(".*[]^$\\") for _, value in written))
    publish(GlideinConfig.read(glidein.config_path), written, [CondorVar(var, "S", "+")])
    lines = [f"{key} {value}" for key, value in [*helpers.items(), *before]]
    for key, value in written:
        if REAL_HELPERS and f"{key} {value}" in lines:
            continue  # GlideinWMS skips a line already in the file, even when a later line has another value
        lines = [line for line in lines if not line.startswith(f"{key} ")] + [f"{key} {value}"]
    assert glidein.config() == parse_glidein_config("\n".join(lines))
    assert all(
        glidein.config()[key] == value
        for key, value in {**helpers, **dict(before)}.items()
        if key not in dict(written)
    )
    assert sorted(condor_vars.read_text().splitlines()) == sorted([*others, f"{var} S - + N Y -"])


@FAST
@given(st.text())
def test_images_dict_from_any_text(text: str) -> None:
    for key, path in images_dict(text).items():
        assert key
        assert path
        assert key == key.strip()
        assert path == path.strip()
        assert "," not in key + path
        assert ":" not in key


IMAGE_KEYS = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters=",:"), min_size=1
)
IMAGE_PATHS = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters=","), min_size=1
)
BLANKS = st.sampled_from(["", " ", "  ", "\t"])


@FAST
@given(st.dictionaries(IMAGE_KEYS, IMAGE_PATHS, max_size=5), st.data())
def test_images_dict_round_trip(images: dict[str, str], data: st.DataObject) -> None:
    items = [f"{data.draw(BLANKS)}{key}:{path}{data.draw(BLANKS)}" for key, path in images.items()]
    assert images_dict(",".join(items)) == images


#: Words a setting is likely to get: valid ones, near misses, and numbers in other scripts.
SETTING_WORDS = st.sampled_from(
    ["", " ", "True", "false", "T", "no", "1", "0", "007", "-1", "1e3", "nan", "inf", "1_0", "²", "١٢", "٣",
     "apptainer", "Process", "docker", "gpu", "cpu", "auto", "8000", "65536", "1023", "0.5", "3600.0", "*",
     "simple,other", "a b", "bad/name", "--log-verbose=1", "--model-repository=/x", "'unclosed", "127.0.0.1",
     "::1", "300.1.1.1"]
)  # fmt: skip
SETTING_KEYS = st.sampled_from([*DEFAULTS, "SINGULARITY_IMAGES_DICT", "GLIDEIN_Site"])


@FAST
@given(st.dictionaries(SETTING_KEYS, st.one_of(SETTING_WORDS, st.text(max_size=12)), max_size=8))
@example({"GLIDEIN_TRITON_HTTP_PORT": "²"})
@example({"GLIDEIN_TRITON": "²"})
def test_settings_are_valid_or_a_config_error_naming_the_key(config: dict[str, str]) -> None:
    try:
        Settings.from_config(config)
    except ConfigError as error:
        failure = error
    else:
        return
    assert [key for key in config if key in DEFAULTS and key in failure.message], (failure.message, config)
    assert failure.failure_type == "Config"


def escape(value: str, quote: str) -> str:
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace(quote, "&quot;" if quote == '"' else "&apos;")


@st.composite
def styles(draw: st.DrawFn) -> dict[str, object]:
    """How a hand-edited file looks: indentation, line ends, quotes, comments, encoding."""
    return {
        "indent": draw(st.sampled_from(["   ", "  ", "    ", "\t"])),
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "quotes": draw(st.lists(st.sampled_from(['"', "'"]), min_size=1, max_size=4)),
        "encoding": draw(st.sampled_from(["", "UTF-8", "ISO-8859-1"])),
        "comment": draw(st.sampled_from(["", "Zürich café", "old entry below, kept <for now>", "  µs  "])),
    }


class Writer:
    """Lines of XML in one style."""

    def __init__(self, style: dict[str, object]) -> None:
        self.style = style
        self.lines: list[str] = []
        self.count = 0

    def attributes(self, pairs: list[tuple[str, str]]) -> str:
        quotes = self.style["quotes"]
        assert isinstance(quotes, list)
        words = []
        for name, value in pairs:
            quote = quotes[self.count % len(quotes)]
            self.count += 1
            words.append(f"{name}={quote}{escape(value, quote)}{quote}")
        return " ".join(words)

    def add(self, depth: int, text: str) -> None:
        self.lines.append(str(self.style["indent"]) * depth + text)

    def comment(self, depth: int) -> None:
        if self.style["comment"]:
            self.add(depth, f"<!-- {self.style['comment']} -->")

    def data(self) -> bytes:
        encoding = str(self.style["encoding"])
        declaration = [f'<?xml version="1.0" encoding="{encoding}"?>'] if encoding else []
        text = str(self.style["newline"]).join(declaration + self.lines) + str(self.style["newline"])
        return text.encode(encoding or "UTF-8")


def container(writer: Writer, depth: int, tag: str, children: list[str] | None) -> None:
    """``<tag>`` with child lines, ``<tag/>`` (empty list), or nothing (None)."""
    if children is None:
        return
    if not children:
        writer.add(depth, f"<{tag}/>")
        return
    writer.add(depth, f"<{tag}>")
    for child in children:
        writer.add(depth + 1, child)
    writer.add(depth, f"</{tag}>")


ENTRY_ATTRS = st.lists(
    st.sampled_from(
        [
            ("GLIDEIN_Site", "Genève"),
            ("GLIDEIN_CPUS", "8"),
            ("GLIDEIN_Resource_Slots", "GPUs,type=main"),
            ("GLIDEIN_Resource_Slots", "Disk,100"),
            ("GLIDEIN_TRITON", "True"),
            ("GLIDEIN_TRITON", "False"),
            ("GLIDEIN_TRITON_REQUIRED", "True"),
        ]
    ),
    max_size=3,
    unique_by=lambda pair: pair[0],
)
OPTIONAL_LIST = st.one_of(st.none(), st.just([]), ENTRY_ATTRS)
ENTRY_NAMES = st.lists(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=3, unique=True
)


@st.composite
def factory_files(draw: st.DrawFn) -> tuple[bytes, list[str], list[tuple[str, list[tuple[str, str]] | None]]]:
    """A factory glideinWMS.xml in some style: (bytes, entry names, each entry's attrs)."""
    writer = Writer(draw(styles()))
    names = draw(ENTRY_NAMES)
    writer.comment(0)
    writer.add(0, "<glidein " + writer.attributes([("factory_name", "f"), ("glidein_name", "g")]) + ">")
    global_files = draw(st.sampled_from(["none", "empty", "other"]))
    other = writer.attributes([("absfname", "/srv/other.sh"), ("executable", "True")])
    files_lines = {"none": None, "empty": [], "other": [f"<file {other}/>"]}[global_files]
    container(writer, 1, "files", files_lines)
    writer.add(1, "<entries>")
    entries = []
    for name in names:
        attrs = draw(OPTIONAL_LIST)
        writer.comment(2)
        writer.add(2, "<entry " + writer.attributes([("name", name), ("enabled", "True")]) + ">")
        layout = draw(st.sampled_from(["partitionable", "fixed"]))
        writer.add(3, "<config>")
        writer.add(4, "<submit " + writer.attributes([("slots_layout", layout)]) + "/>")
        writer.add(3, "</config>")
        lines = (
            None
            if attrs is None
            else [
                "<attr "
                + writer.attributes(
                    [("name", key), ("const", "True"), ("parameter", "True"), ("value", value)]
                )
                + "/>"
                for key, value in attrs
            ]
        )
        container(writer, 3, "attrs", lines)
        container(writer, 3, "files", draw(st.sampled_from([None, []])))
        writer.add(2, "</entry>")
        entries.append((name, attrs))
    writer.add(2, '<!-- <entry name="RETIRED" enabled="False"></entry> -->')
    writer.add(1, "</entries>")
    writer.add(0, "</glidein>")
    return writer.data(), names, entries


def removed_lines(before: bytes, after: bytes) -> list[str]:
    """Lines of ``before`` not in ``after`` (read as Latin-1: any bytes, any of the generated encodings)."""
    old = before.decode("latin-1").splitlines(keepends=True)
    new = after.decode("latin-1").splitlines(keepends=True)
    opcodes = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return [
        line for tag, start, end, _, _ in opcodes if tag in ("delete", "replace") for line in old[start:end]
    ]


def check_patched_or_refused(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    patcher: Callable[[bytes, str], Patched],
    editable: tuple[str, ...],
    must_succeed: bool,
) -> bytes | None:
    """The patch is idempotent and changes only what it must, or it is refused with the file unchanged."""
    try:
        patched = patcher(data, "config.xml")
    except PatchError as error:
        refused = error
    else:
        refused = None
    event("refused" if refused is not None else "patched")
    if refused is not None:
        assert not must_succeed, refused
        path = tmp_path_factory.mktemp("refused") / "config.xml"
        path.write_bytes(data)
        assert patch_file(path, patcher, True, io.StringIO(), io.StringIO()) == EXIT_ERROR
        assert path.read_bytes() == data
        assert not list(path.parent.glob("*.bak*"))
        return None
    assert patcher(patched.data, "config.xml").data == patched.data  # a second run is a no-op
    etree.fromstring(patched.data)
    removed = removed_lines(data, patched.data)
    event(f"{len(removed)} lines changed in place")
    for line in removed:
        assert any(word in line for word in editable), line  # every other byte is where it was
    if data.startswith(b"<?xml"):
        assert patched.data.split(b"?>")[0] == data.split(b"?>")[0]
    path = tmp_path_factory.mktemp("patched") / "config.xml"
    path.write_bytes(data)
    code = patch_file(path, patcher, True, io.StringIO(), io.StringIO())
    assert code == EXIT_OK
    assert path.read_bytes() == patched.data
    assert patch_file(path, patcher, False, io.StringIO(), io.StringIO()) == EXIT_OK
    if patched.data != data:
        assert (
            patch_file(path.with_name("config.xml.bak"), patcher, False, io.StringIO(), io.StringIO())
            == EXIT_CHANGES
        )
    return patched.data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(factory_files(), st.data())
def test_factory_patch_is_idempotent_and_local_or_refused(
    tmp_path_factory: pytest.TempPathFactory,
    generated: tuple[bytes, list[str], list[tuple[str, list[tuple[str, str]] | None]]],
    data: st.DataObject,
) -> None:
    source, names, entries = generated
    targets = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    missing = data.draw(st.booleans())
    overwrite = data.draw(st.booleans())
    options = FactoryOptions(entries=(*targets, *(["NO_SUCH_ENTRY"] if missing else [])), overwrite=overwrite)
    # An existing GLIDEIN_TRITON attr is not the one the patch writes (const="True" here, "False" there).
    conflict = any(
        key == "GLIDEIN_TRITON" for name, attrs in entries if name in targets for key, _ in attrs or []
    )
    result = check_patched_or_refused(
        tmp_path_factory,
        source,
        lambda data_, label: factory_cli.patch(data_, label, options),
        ("<attrs/>", "<files/>", "GLIDEIN_Resource_Slots", "GLIDEIN_TRITON"),
        must_succeed=not missing and (overwrite or not conflict),
    )
    if result is None:
        return
    root = etree.fromstring(result)
    for name in targets:
        (entry,) = root.xpath("entries/entry[@name=$name]", name=name)
        assert entry.xpath("attrs/attr[@name='GLIDEIN_TRITON']/@value") == ["True"]
        assert entry.xpath("files/file/untar_options/@absdir_outattr") == [payload.CODE_DIR_ATTRIBUTE]
    before = etree.fromstring(source)
    for name in set(names) - set(targets):
        (old,) = before.xpath("entries/entry[@name=$name]", name=name)
        (new,) = root.xpath("entries/entry[@name=$name]", name=name)
        assert etree.tostring(old) == etree.tostring(new)
    assert len(re.findall(rb"<!--", result)) == len(re.findall(rb"<!--", source))


IMAGE_VALUES = st.dictionaries(
    st.sampled_from(["default", SERVER_KEY, "tritonclient", "rhel8"]),
    st.sampled_from(["/cvmfs/img:latest", "docker://nvcr.io/nvidia/tritonserver:24.08-py3", "/srv/x"]),
    max_size=3,
)


@st.composite
def frontend_files(draw: st.DrawFn) -> tuple[bytes, list[str], dict[str, str] | None]:
    """A frontend.xml in some style: (bytes, group names, global SINGULARITY_IMAGES_DICT)."""
    writer = Writer(draw(styles()))
    writer.comment(0)
    writer.add(0, "<frontend " + writer.attributes([("frontend_name", "vo")]) + ">")
    images = draw(st.one_of(st.none(), IMAGE_VALUES))
    attrs = None
    if images is not None:
        value = ",".join(f"{key}:{path}" for key, path in images.items())
        attrs = ["<attr " + writer.attributes([("name", "SINGULARITY_IMAGES_DICT"), ("value", value)]) + "/>"]
    container(writer, 1, "attrs", draw(st.sampled_from([attrs, attrs or []])))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), max_size=3, unique=True))
    writer.add(1, "<groups>")
    for name in names:
        writer.comment(2)
        writer.add(2, "<group " + writer.attributes([("name", name), ("enabled", "True")]) + ">")
        match = draw(st.sampled_from(["none", "true", "expression"]))
        if match != "none":
            expression = "True" if match == "true" else 'job.get("RequestGPUs", 0) >= 1'
            pairs = [
                ("match_expr", expression),
                ("start_expr", "True" if match == "true" else "(TARGET.X >= 1)"),
            ]
            writer.add(3, "<match " + writer.attributes(pairs) + ">")
            writer.add(4, "<factory " + writer.attributes([("query_expr", "True")]) + "/>")
            writer.add(4, "<job " + writer.attributes([("query_expr", "(JobUniverse == 5)")]) + "/>")
            writer.add(3, "</match>")
        container(writer, 3, "attrs", draw(st.sampled_from([None, []])))
        writer.add(2, "</group>")
    writer.add(1, "</groups>")
    writer.add(0, "</frontend>")
    return writer.data(), names, images


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frontend_files(), st.data())
def test_frontend_patch_is_idempotent_and_local_or_refused(
    tmp_path_factory: pytest.TempPathFactory,
    generated: tuple[bytes, list[str], dict[str, str] | None],
    data: st.DataObject,
) -> None:
    source, names, images = generated
    group = data.draw(st.one_of(st.none(), st.sampled_from(names or ["new_group"]), st.just("new_group")))
    create = data.draw(st.booleans())
    overwrite = data.draw(st.booleans())
    wanted = {SERVER_KEY: "/cvmfs/triton/server"}
    options = FrontendOptions(group, create, wanted, overwrite)
    conflict = any((images or {}).get(key, path) != path for key, path in wanted.items())
    group_missing = group is not None and group not in names and not create
    result = check_patched_or_refused(
        tmp_path_factory,
        source,
        lambda data_, label: frontend_cli.patch(data_, label, options),
        ("<attrs/>", "SINGULARITY_IMAGES_DICT", "match_expr", "query_expr", "<factory", "<job", "<groups"),
        # No SINGULARITY_IMAGES_DICT at all: refused (a new one would hide the factory's default image).
        must_succeed=not group_missing and images is not None and (overwrite or not conflict),
    )
    if result is None:
        return
    root = etree.fromstring(result)
    holders = root.xpath("//attr[@name='SINGULARITY_IMAGES_DICT']/@value")
    assert any(images_dict(str(value)).get(SERVER_KEY) == wanted[SERVER_KEY] for value in holders)
    if group is not None:
        (patched_group,) = root.xpath("groups/group[@name=$name]", name=group)
        assert patched_group.xpath("attrs/attr[@name='GLIDEIN_TRITON']/@value") == ["True"]
