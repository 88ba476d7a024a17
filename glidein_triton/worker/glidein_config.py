"""Reading glidein_config, and writing to it through GlideinWMS's own add_config_line.source.

glidein_config is a text file of ``KEY value`` lines: the key, one space, and the rest of the line as the
value. The last line for a key wins, as with ``gconfig_get``. Lines without a space are not key lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import failure_messages
from glidein_triton.worker.errors import CorruptionError

LOG = logging.getLogger(__name__)

#: Where the publisher shell helper lives (next to this package in the payload and in the wheel).
PUBLISH_HELPER = Path(__file__).resolve().parent.parent / "scripts" / "publish_config.sh"
#: GlideinWMS's gconfig_add_safe waits up to 300 s for glidein_config's lock; then we give up too.
PUBLISH_TIMEOUT = 330.0


def parse_glidein_config(text: str) -> dict[str, str]:
    """Return the value of every key in ``text``; a key's last line wins."""
    values: dict[str, str] = {}
    for line in text.split("\n"):
        key, separator, value = line.partition(" ")
        if separator and key:
            values[key] = value
    return values


class GlideinConfig(Mapping[str, str]):
    """A read-only view of one glidein_config file, read once."""

    def __init__(self, path: Path, values: Mapping[str, str]) -> None:
        self.path = path
        self._values = dict(values)

    @classmethod
    def read(cls, path: str | Path) -> GlideinConfig:
        """Read ``path``; a missing or unreadable file is a corruption of the glidein."""
        resolved = Path(path).resolve()
        try:
            # Bytes, then decoded: read_text() would turn a carriage return inside a value into a line end.
            text = resolved.read_bytes().decode("utf-8", errors="surrogateescape")
        except OSError as error:
            message = failure_messages.CONFIG_UNREADABLE.format(path=resolved, error=error.strerror)
            raise CorruptionError(message) from error
        return cls(resolved, parse_glidein_config(text))

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def work_dir(self) -> Path:
        """The glidein's work directory: where glidein_config, condor_vars and .gwms.d are."""
        return self.path.parent


@dataclass(frozen=True)
class CondorVar:
    """One line of condor_vars.lst: ``NAME TYPE DEFAULT CONDOR_NAME REQUIRED PUBLISH JOB_ENV``."""

    name: str
    type: str
    condor_name: str
    job_env: str = "-"
    default: str = "-"
    required: str = "N"
    publish: str = "Y"

    def fields(self) -> list[str]:
        return [
            self.name,
            self.type,
            self.default,
            self.condor_name,
            self.required,
            self.publish,
            self.job_env,
        ]

    def line(self) -> str:
        return " ".join(self.fields())


def publish(
    config: GlideinConfig, values: Sequence[tuple[str, str]], condor_vars: Sequence[CondorVar]
) -> None:
    """Add ``values`` to glidein_config and ``condor_vars`` to condor_vars.lst.

    Both go through the glidein's own ``add_config_line.source`` (``gconfig_add_safe`` and
    ``add_condor_vars_line``), in one shell, so the files are written exactly as GlideinWMS writes them.
    """
    helper_source = config.get("ADD_CONFIG_LINE_SOURCE", "")
    if not helper_source or not Path(helper_source).is_file():
        raise CorruptionError(
            failure_messages.NO_CONFIG_HELPER.format(path=config.path, helper=helper_source)
        )
    argv = ["bash", str(PUBLISH_HELPER), helper_source, str(config.path), config.get("CONDOR_VARS_FILE", "")]
    for key, value in values:
        if "\n" in value or "\n" in key:
            raise ValueError(f"glidein_config values are single lines: {key}")
        argv += ["config", key, value]
    for var in condor_vars:
        argv += ["var", *var.fields()]
    # Imported here: subprocess costs the periodic script, which reads glidein_config, ~3 ms.
    import subprocess  # noqa: PLC0415

    from glidein_triton.worker.commands import run_quietly  # noqa: PLC0415

    try:
        result = run_quietly(argv, PUBLISH_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise CorruptionError(failure_messages.CONFIG_LOCK_HELD.format(timeout=PUBLISH_TIMEOUT)) from error
    if result.returncode != 0:
        raise CorruptionError(
            failure_messages.PUBLISH_FAILED.format(),
            evidence=f"exit code {result.returncode}: {result.stderr.strip()[-2000:]}",
        )
    LOG.debug("published %d config lines and %d condor vars", len(values), len(condor_vars))
