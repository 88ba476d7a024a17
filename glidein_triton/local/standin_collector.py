"""STAND-IN for a pool's collector, for tests: the ads file that the stand-in condor_status and
condor_advertise (glidein_triton/local/standins/) query and update.

It is NOT HTCondor. It models what docs/pool-facts.md reads in HTCondor's sources: the options glidein-triton
uses and their prefixes, the `-af` and `-json` output, the sort order, the messages and exit codes, and
what the collector does to each ad (it sets ``AuthenticatedIdentity`` from the authenticated connection,
overwriting the ad's claim, stamps ``LastHeardFrom`` and drops ads past their lifetime).

The ads file (``$GLIDEIN_TRITON_STANDIN_ADS``) holds ads in old ClassAd syntax, one ``Name = expression`` a
line, separated by blank lines; a line ``# advertised by: IDENTITY`` in an ad is the identity the collector
authenticated when the ad was sent (none: an unauthenticated update).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import classad2

ADS_VARIABLE = "GLIDEIN_TRITON_STANDIN_ADS"
#: The identity condor_advertise's connection authenticates as (the owner of the token it would use).
IDENTITY_VARIABLE = "GLIDEIN_TRITON_STANDIN_IDENTITY"
#: When set, the only host ``-pool`` reaches: another one fails as an unreachable collector does.
COLLECTOR_VARIABLE = "GLIDEIN_TRITON_STANDIN_COLLECTOR"
ADVERTISED_BY = "# advertised by:"
#: CLASSAD_LIFETIME's default (src/condor_collector.V6/collector.cpp).
DEFAULT_LIFETIME = 900
STATUS_USAGE = "Usage: condor_status [help-opt] [query-opt] [display-opt] [custom-opts ...] [name ...]"
ADVERTISE_USAGE = "Usage: condor_advertise [options] <update-command> [<classad-filename>]"
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
COLLECTOR_STAMPS = ("AuthenticatedIdentity", "AuthenticationMethod")


class ToolError(Exception):
    """What the real tool prints on stderr before it exits 1."""


@dataclass
class StoredAd:
    """One ad of the file: its attributes as written, and who the collector authenticated for it."""

    attributes: list[tuple[str, str]] = field(default_factory=list)
    identity: str | None = None

    def classad(self) -> Any:
        """The ad as the collector serves it: ``AuthenticatedIdentity`` is the collector's, not the ad's."""
        ad = classad2.ClassAd()
        for name, expression in self.attributes:
            ad[name] = classad2.ExprTree(expression)
        for name in COLLECTOR_STAMPS:
            if name in ad:
                del ad[name]
        if self.identity:
            ad["AuthenticatedIdentity"] = self.identity
            ad["AuthenticationMethod"] = "TOKEN"
        return ad

    def key(self) -> str:
        """What the collector identifies a startd ad by: Name, else Machine and SlotID (hashkey.cpp)."""
        ad = self.classad()
        name = ad.get("Name")
        if isinstance(name, str):
            return name
        machine = ad.get("Machine")
        if not isinstance(machine, str):
            raise ToolError("ad has neither Name nor Machine: the collector ignores it")
        slot = ad.get("SlotID")
        return f"{machine}:{slot}" if isinstance(slot, int) else machine


def parse_ads(text: str, source: str) -> list[StoredAd]:
    """The ads of an ads file (or of condor_advertise's input); a line that does not parse names itself."""
    ads: list[StoredAd] = []
    current = StoredAd()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            if current.attributes:
                ads.append(current)
            current = StoredAd()
        elif stripped.startswith(ADVERTISED_BY):
            current.identity = stripped[len(ADVERTISED_BY) :].strip() or None
        elif not stripped.startswith("#"):
            current.attributes.append(parse_attribute(stripped, f"{source}:{number}"))
    if current.attributes:
        ads.append(current)
    return ads


def parse_attribute(line: str, where: str) -> tuple[str, str]:
    """``Name = expression``, checked with classad2."""
    name, sep, expression = line.partition("=")
    name, expression = name.strip(), expression.strip()
    if not sep or not ATTRIBUTE_NAME.match(name) or not expression:
        raise ToolError(f"{where}: not an attribute assignment: {line}")
    try:
        classad2.ExprTree(expression)
    except classad2.ClassAdException as error:
        raise ToolError(f"{where}: cannot parse the expression of {name}: {error}") from None
    return name, expression


def format_ads(ads: Sequence[StoredAd]) -> str:
    """The ads file's text."""
    blocks = []
    for ad in ads:
        lines = [f"{ADVERTISED_BY} {ad.identity}"] if ad.identity else []
        lines += [f"{name} = {expression}" for name, expression in ad.attributes]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def ads_path() -> Path:
    """The ads file named by the environment."""
    value = os.environ.get(ADS_VARIABLE, "")
    if not value:
        raise ToolError(f"stand-in collector: {ADS_VARIABLE} names no ads file")
    return Path(value)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds the ads file's lock (a sibling ``.lock`` file), as one collector serialises its updates."""
    with Path(f"{path}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_stored(path: Path) -> list[StoredAd]:
    """The file's ads; a missing file is a collector with no ads."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return parse_ads(text, str(path))


def write_stored(path: Path, ads: Sequence[StoredAd]) -> None:
    """Replaces the file's content in one rename."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(format_ads(ads))
    Path(temporary).replace(path)


def alive(ad: Any, now: float) -> bool:
    """Whether the collector still holds the ad: ``LastHeardFrom + ClassAdLifetime`` not passed.
    An ad written without ``LastHeardFrom`` (by a test) never expires."""
    heard = ad.get("LastHeardFrom")
    if not isinstance(heard, int):
        return True
    lifetime = ad.get("ClassAdLifetime")
    return heard + (lifetime if isinstance(lifetime, int) else DEFAULT_LIFETIME) >= now


# ---------------------------------------------------------------------------------------------- condor_status


def dash_prefix(argument: str, word: str, minimum: int) -> bool:
    """HTCondor's ``is_dash_arg_prefix``: ``-`` and at least ``minimum`` leading letters of ``word``;
    ``--`` and the whole word."""
    if not argument.startswith("-"):
        return False
    rest = argument[1:]
    if rest.startswith("-"):
        return rest[1:] == word
    return bool(rest) and word.startswith(rest) and len(rest) >= minimum


@dataclass
class StatusQuery:
    """The parsed condor_status command line."""

    pool: str | None = None
    daemon_ads: bool = False
    constraints: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    autoformat: list[str] = field(default_factory=list)
    json: bool = False
    long: bool = False
    attributes: list[str] = field(default_factory=list)
    limit: int | None = None


def missing_value(option: str, what: str) -> ToolError:
    return ToolError(f'condor_status: {option} {what}\nUse "condor_status -help" for details')


def parse_status_arguments(arguments: Sequence[str]) -> StatusQuery:
    """The options the stand-in models, with the real tool's prefixes and messages."""
    query = StatusQuery()
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        value = arguments[index + 1] if index + 1 < len(arguments) else None
        if dash_prefix(argument, "pool", 1):
            if value is None:
                raise missing_value("-pool", "requires a hostname as an argument.")
            query.pool, index = value, index + 1
        elif dash_prefix(argument, "startd", 4):
            query.daemon_ads = True
        elif dash_prefix(argument, "constraint", 3):
            if value is None:
                raise missing_value("-constraint", "requires another argument")
            query.constraints.append(value)
            index += 1
        elif dash_prefix(argument, "autoformat", 5) or dash_prefix(argument, "af", 2):
            expressions = []
            while index + 1 < len(arguments) and not arguments[index + 1].startswith("-"):
                index += 1
                expressions.append(arguments[index])
            if not expressions:
                raise ToolError(
                    f"Error: Argument {argument} requires at least one attribute parameter\n"
                    'Use "condor_status -help" for details'
                )
            query.autoformat += expressions
        elif dash_prefix(argument, "json", 2):
            query.json = True
        elif dash_prefix(argument, "long", 1):
            query.long = True
        elif dash_prefix(argument, "attributes", 2):
            if value is None:
                raise missing_value("-attributes", "requires one additional argument")
            query.attributes += [name.strip() for name in value.split(",") if name.strip()]
            index += 1
        elif dash_prefix(argument, "limit", 2):
            if value is None:
                raise missing_value("-limit", "requires one additional argument")
            query.limit = int(value) if value.lstrip("-").isdigit() else 0
            index += 1
        elif argument.startswith("-"):
            raise ToolError(f"Error:  Unknown option {argument}\n{STATUS_USAGE}")
        else:
            query.names.append(argument)
        index += 1
    if not (query.autoformat or query.json or query.long):
        raise ToolError("condor_status stand-in: the table output is not modelled; use -af, -json or -long")
    return query


def requirements(query: StatusQuery) -> Any:
    """The constraints ANDed, with the names ORed, as the query object builds them; a parse error fails the
    whole query as the collector's ``Q_PARSE_ERROR`` does."""
    parts = [f"({constraint})" for constraint in query.constraints]
    if query.names:
        names = " || ".join(
            f"Name == {classad2.quote(n)} || Machine == {classad2.quote(n)}" for n in query.names
        )
        parts.append(f"({names})")
    text = " && ".join(parts) or "true"
    try:
        return classad2.ExprTree(text)
    except classad2.ClassAdException:
        raise ToolError("Error: invalid constraint\n") from None


def is_true(value: Any) -> bool:
    """A constraint's result as the collector takes it (EvalBool): true, or a non-zero number."""
    if isinstance(value, bool):
        return value
    # classad2's Undefined and Error are an int enum: neither is true
    return isinstance(value, (int, float)) and not isinstance(value, classad2.Value) and value != 0


def sort_key(ad: Any, order: int) -> tuple[str, str, int]:
    """Machine, then Name, then arrival (status.cpp's default sort)."""
    machine, name = ad.get("Machine"), ad.get("Name")
    return (machine if isinstance(machine, str) else "", name if isinstance(name, str) else "", order)


def old_syntax(value: Any) -> str:
    """A value as ``%v`` prints it: strings bare, everything else in old ClassAd syntax."""
    if isinstance(value, str):
        return value
    if value is classad2.Value.Undefined:
        return "undefined"
    if value is classad2.Value.Error:
        return "error"
    holder = classad2.ClassAd()
    holder["v"] = value
    text: str = holder.printOld()
    return text.split("=", 1)[1].strip()


def json_members(ad: Any, names: Sequence[str]) -> list[str]:
    """The ``"Name": value`` members ClassAdJsonUnParser writes for ``names``, at one ad's indentation."""
    members = []
    for name in names:
        single = classad2.ClassAd()
        single[name] = ad.lookup(name)
        text: str = single.printJson()
        members.append(text[len("{\n") : -len("\n}")])
    return members


def selected_names(ad: Any, wanted: Sequence[str]) -> list[str]:
    """The ad's attribute names sorted case-insensitively, limited to ``wanted`` when given."""
    names = list(ad.keys())
    if wanted:
        lowered = {name.lower() for name in wanted}
        names = [name for name in names if name.lower() in lowered]
    return sorted(names, key=str.lower)


def render(query: StatusQuery, ads: Sequence[Any]) -> str:
    """stdout for the matched ads."""
    if query.autoformat:
        expressions = [classad2.ExprTree(text) for text in query.autoformat]
        return "".join(" ".join(old_syntax(e.eval(ad)) for e in expressions) + "\n" for ad in ads)
    if query.json:
        if not ads:
            return ""
        rendered = [
            "{\n" + ",\n".join(json_members(ad, selected_names(ad, query.attributes))) + "\n}" for ad in ads
        ]
        return "[\n" + "\n,\n".join(rendered) + "\n]\n"
    blocks = []
    for ad in ads:
        names = selected_names(ad, query.attributes)
        blocks.append("".join(f"{name} = {old_syntax_expression(ad, name)}\n" for name in names))
    return "\n".join(blocks) + ("\n" if blocks else "")


def old_syntax_expression(ad: Any, name: str) -> str:
    holder = classad2.ClassAd()
    holder[name] = ad.lookup(name)
    text: str = holder.printOld()
    return text.split("=", 1)[1].strip()


def check_reachable(query: StatusQuery) -> None:
    """The collector the query goes to: ``-pool``, else COLLECTOR_HOST from CONDOR_CONFIG."""
    if query.pool is None:
        config = os.environ.get("CONDOR_CONFIG", "")
        if not config or not Path(config).is_file():
            raise ToolError(
                "\nNeither the environment variable CONDOR_CONFIG,\n"
                "/etc/condor/, /usr/local/etc/, nor ~condor/ contain a condor_config source.\n"
                "Either set CONDOR_CONFIG to point to a valid config source,\n"
                'or put a "condor_config" file in /etc/condor/ /usr/local/etc/ or ~condor/'
            )
        return
    reachable = os.environ.get(COLLECTOR_VARIABLE, "")
    if reachable and query.pool != reachable:
        raise ToolError(
            f"Error: communication error\nCEDAR:6001:Failed to connect to {query.pool}\n"
            f"Error: Failed to contact collector at {query.pool}"
        )


def status(arguments: Sequence[str], now: float | None = None) -> str:
    """condor_status: the text it prints on stdout, or a ToolError."""
    query = parse_status_arguments(arguments)
    check_reachable(query)
    constraint = requirements(query)
    now = time.time() if now is None else now
    matched = []
    for order, stored in enumerate(read_stored(ads_path())):
        ad = stored.classad()
        my_type = ad.get("MyType")
        is_daemon_ad = isinstance(my_type, str) and my_type.lower() == "startd"
        if is_daemon_ad != query.daemon_ads or not alive(ad, now):
            continue
        if is_true(constraint.eval(ad)):
            matched.append((sort_key(ad, order), ad))
        if query.limit is not None and query.limit > 0 and len(matched) >= query.limit:
            break
    return render(query, [ad for _key, ad in sorted(matched, key=lambda item: item[0])])


# ------------------------------------------------------------------------------------------- condor_advertise

ADVERTISE_COMMANDS = ("UPDATE_STARTD_AD", "UPDATE_STARTD_AD_WITH_ACK", "INVALIDATE_STARTD_ADS")


def advertise(arguments: Sequence[str], read_stdin: Callable[[], str], now: float | None = None) -> None:
    """condor_advertise: updates (or invalidates) a startd ad in the ads file."""
    command, filename = None, None
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument == "-pool":
            if index + 1 >= len(arguments):
                raise ToolError(f"-pool requires an argument.\n\n{ADVERTISE_USAGE}")
            index += 1
        elif argument in ("-tcp", "-udp", "-debug"):
            pass
        elif not argument.startswith("-") or argument == "-":
            if command is None:
                if argument not in ADVERTISE_COMMANDS:
                    raise ToolError(f"Unknown command name {argument}\n\n{ADVERTISE_USAGE}")
                command = argument
            elif filename is None:
                filename = argument
            else:
                raise ToolError(f"Extra argument: {argument}\n\n{ADVERTISE_USAGE}")
        else:
            raise ToolError(f"Unknown argument: {argument}\n\n{ADVERTISE_USAGE}")
        index += 1
    if command is None:
        raise ToolError(ADVERTISE_USAGE)
    if filename is None or filename == "-":
        filename, text = "(stdin)", read_stdin()
    else:
        try:
            text = Path(filename).read_text(encoding="utf-8")
        except OSError as error:
            raise ToolError(f"couldn't open {filename}: {error.strerror}") from None
    try:
        sent = parse_ads(text, filename)
    except ToolError:
        raise ToolError(f"couldn't parse ClassAd in {filename}") from None
    if len(sent) > 1:
        raise ToolError(f"ERROR: multiple ads in {filename}")
    if not sent:
        raise ToolError(f"{filename} is empty")
    update(sent[0], command, time.time() if now is None else now)


def update(sent: StoredAd, command: str, now: float) -> None:
    """What the collector does with one update: stamps who sent it and when, replaces the ad of that key."""
    identity = os.environ.get(IDENTITY_VARIABLE) or None
    attributes = [(n, e) for n, e in sent.attributes if n not in (*COLLECTOR_STAMPS, "LastHeardFrom")]
    stamped = StoredAd([*attributes, ("LastHeardFrom", str(int(now)))], identity)
    key = stamped.key()
    path = ads_path()
    with locked(path):
        ads = [ad for ad in read_stored(path) if ad.key() != key]
        if command != "INVALIDATE_STARTD_ADS":
            ads.append(stamped)
        write_stored(path, ads)


def main_status(arguments: Sequence[str]) -> int:
    """Entry point of the stand-in condor_status."""
    try:
        sys.stdout.write(status(arguments))
    except ToolError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


def main_advertise(arguments: Sequence[str]) -> int:
    """Entry point of the stand-in condor_advertise."""
    try:
        advertise(arguments, sys.stdin.read)
    except ToolError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


STANDINS = Path(__file__).resolve().parent / "standins"


def install_condor_dir(destination: Path) -> Path:
    """Lays out ``destination`` as a glidein's CONDOR_DIR for the stand-ins: ``bin/condor_status`` and
    ``sbin/condor_advertise``, run by this Python (which has classad2)."""
    for sub, tool in (("bin", "condor_status"), ("sbin", "condor_advertise")):
        (destination / sub).mkdir(parents=True, exist_ok=True)
        wrapper = destination / sub / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDINS / tool}" "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
    return destination
