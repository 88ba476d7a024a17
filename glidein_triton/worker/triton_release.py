"""Which Triton release a server image or binary has, and which of the plugin's options it accepts.

An option that a release does not know makes ``tritonserver`` print "unrecognized option" and its usage,
and exit 1, so the options of an image are checked before the server starts. The first release of each
option is the first server tag whose sources have it (triton-inference-server/server,
src/command_line_parser.cc).

The release is read, cheapest first, from:

* a sandbox directory image (e.g. on CVMFS): ``TRITON_SERVER_VERSION`` / ``NVIDIA_TRITON_SERVER_VERSION``
  in ``.singularity.d/env/*.sh`` (the ``ENV`` lines of the image), else ``opt/tritonserver/TRITON_VERSION``;
* the ``yy.mm`` in the image name (e.g. ``tritonserver:24.01``), for image files and URIs;
* a binary: ``tritonserver --help``, which lists every option it accepts (and exits 1). The startup script
  asks only a binary that refused an option (see ``startup.plan_for``); ``check`` always asks.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import failure_messages
from glidein_triton.worker.commands import run_quietly
from glidein_triton.worker.cuda_support import release_from_image
from glidein_triton.worker.errors import ConfigError

#: option -> (first Triton version, its container release yy.mm)
OPTION_RELEASES = {
    "--log-file": ((2, 26), "22.09"),
    "--metrics-address": ((2, 34), "23.05"),
    "--model-load-retry-count": ((2, 42), "24.01"),
}
HELP_TIMEOUT = 20.0
ENV_DIRECTORY = ".singularity.d/env"
VERSION_FILE = "opt/tritonserver/TRITON_VERSION"
SERVER_VERSION = re.compile(r"(?<![A-Z_])TRITON_SERVER_VERSION\b\D*?(\d+)\.(\d+)(?:\.\d+)?")
CONTAINER_VERSION = re.compile(r"NVIDIA_TRITON_SERVER_VERSION\b\D*?(\d{2}\.\d{2})\b")
VERSION_TEXT = re.compile(r"^\s*(\d+)\.(\d+)")
HELP_OPTION = re.compile(r"^\s+(--[a-z0-9][a-z0-9-]*)", re.MULTILINE)
#: Replaces --metrics-address/--metrics-port on a release without --metrics-address, whose metrics would
#: listen on every interface of the node.
METRICS_OFF = "--allow-metrics=false"
METRICS_OPTIONS = ("--metrics-address", "--metrics-port")
UNRECOGNIZED = re.compile(r"unrecognized option '(--[a-z0-9-]+)")


@dataclass(frozen=True)
class TritonRelease:
    """What is known of a server: its version (2, N), its container release, or the options it lists."""

    source: str = ""
    version: tuple[int, int] | None = None
    container: str = ""
    options: frozenset[str] | None = None

    @property
    def known(self) -> bool:
        return self.version is not None or bool(self.container) or self.options is not None

    def describe(self) -> str:
        """E.g. ``Triton 2.42 (24.01), from <file>`` or ``options listed by <binary> --help``."""
        if self.version is not None:
            name = f"Triton {self.version[0]}.{self.version[1]}"
            return (
                f"{name} ({self.container}), from {self.source}"
                if self.container
                else f"{name}, from {self.source}"
            )
        if self.container:
            return f"Triton {self.container}, from {self.source}"
        if self.options is not None:
            return f"options listed by {self.source}"
        return "Triton release unknown"

    def supports(self, option: str) -> bool:
        """Whether the server accepts ``option`` (an unknown release is assumed to be recent)."""
        if self.options is not None:
            return option in self.options
        first = OPTION_RELEASES.get(option)
        if first is None:
            return True
        if self.version is not None:
            return self.version >= first[0]
        if self.container:
            return self.container >= first[1]
        return True


def option_name(word: str) -> str:
    return word.split("=", 1)[0]


def missing_options(release: TritonRelease, words: Sequence[str]) -> list[str]:
    """The options among ``words`` (``--option[=value]``) that ``release`` does not accept, in order."""
    names = dict.fromkeys(option_name(word) for word in words if word.startswith("--"))
    return [name for name in names if not release.supports(name)]


def first_release(option: str) -> str:
    """E.g. ``Triton 2.40 (23.11)``: the first release with ``option``."""
    (major, minor), container = OPTION_RELEASES[option]
    return f"Triton {major}.{minor} ({container})"


def from_sandbox(image: Path) -> TritonRelease:
    """The release recorded in a sandbox directory image, or an unknown release."""
    version: tuple[int, int] | None = None
    container = ""
    source = ""
    try:
        env_files = sorted((image / ENV_DIRECTORY).glob("*.sh"))
    except OSError:
        env_files = []
    for path in env_files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        server = SERVER_VERSION.search(text)
        if server and version is None:
            version, source = (int(server.group(1)), int(server.group(2))), str(path)
        image_release = CONTAINER_VERSION.search(text)
        if image_release and not container:
            container, source = image_release.group(1), source or str(path)
    if version is None:
        try:
            match = VERSION_TEXT.match((image / VERSION_FILE).read_text(errors="replace"))
        except OSError:
            match = None
        if match:
            version, source = (int(match.group(1)), int(match.group(2))), str(image / VERSION_FILE)
    return TritonRelease(source, version, container)


def from_help(argv: Sequence[str], environment: Mapping[str, str] | None = None) -> TritonRelease:
    """The options ``<argv> --help`` lists (tritonserver prints its usage and exits 1)."""
    try:
        result = run_quietly([*argv, "--help"], HELP_TIMEOUT, environment)
    except (OSError, subprocess.TimeoutExpired):
        return TritonRelease()
    options = frozenset(HELP_OPTION.findall(result.stdout + result.stderr))
    if "--model-repository" not in options:
        return TritonRelease()  # not tritonserver's usage text
    return TritonRelease(f"{' '.join(argv)} --help", options=options)


def from_image(image: str) -> TritonRelease:
    """A sandbox directory's recorded release, else the ``yy.mm`` in the image's name."""
    path = Path(image)
    if path.is_dir():
        found = from_sandbox(path)
        if found.known:
            return found
    container = release_from_image(image)
    return TritonRelease(f"the image name {image}", container=container) if container else TritonRelease()


def unrecognized_option(log_text: str) -> str:
    """The option a server refused at startup ("unrecognized option '--x'"), or ``""``."""
    match = UNRECOGNIZED.search(log_text)
    return match.group(1) if match else ""


def fit_options(release: TritonRelease, options: Sequence[str], operator_options: Sequence[str]) -> list[str]:
    """``options`` as ``release`` accepts them: an operator's option it lacks is an error naming both.

    Without ``--metrics-address`` (before 2.34) the metrics are switched off rather than
    served on every interface.
    """
    missing = missing_options(release, options)
    operator = {option_name(word) for word in operator_options}
    for option in missing:
        needs = {"option": option, "first_release": first_release(option), "release": release.describe()}
        if option in operator:
            raise ConfigError(failure_messages.OPTION_NEWER_THAN_SERVER.format(**needs))
    if "--metrics-address" not in missing:
        return list(options)
    kept = [word for word in options if option_name(word) not in METRICS_OPTIONS]
    return kept if METRICS_OFF in kept else [*kept, METRICS_OFF]
