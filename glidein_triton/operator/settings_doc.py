"""``glidein-triton settings-doc``: the settings reference (docs/settings.md), generated from SETTINGS."""

from __future__ import annotations

from collections.abc import Sequence

from glidein_triton.operator import generated_doc
from glidein_triton.worker.settings import ALLOWED_SERVER_OPTIONS, RETIRED_SETTINGS, SETTINGS, SettingSpec

HEADER = """\
# Settings reference

<!-- Generated from glidein_triton/worker/settings.py by `glidein-triton settings-doc --output
     docs/settings.md`. Do not edit by hand: a test fails when this file and the code differ. -->

Every setting is a glidein_config key that the startup script reads. Operators set them as `<attr>`s with
`parameter="True"`: in a factory entry (`glidein-triton factory-xml --set KEY=VALUE`, `--image`,
`--model-repository`, see [operator-guide.md](operator-guide.md)), or in a frontend's global or group
`<attrs>`. The factory writes them with `const="False"`, so a frontend value wins over the factory's.

A missing or blank value means the default. Truth values are read as GlideinWMS's `gconfig_get_bool` reads
them (`True`, `T`, `Yes`, `Y` or a number other than 0 are true; `False`, `F`, `No`, `N`, `0` are false,
in any case). Any other invalid value fails the Triton set-up with a `Config` error that names the key, the
value and what is allowed (fatal to the glidein only with `GLIDEIN_TRITON_REQUIRED`).

| key | default | allowed values | what it does |
|---|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(spec: SettingSpec) -> str:
    default = spec.default_text or (f"`{spec.default}`" if spec.default else "(none)")
    return f"| `{spec.key}` | {_cell(default)} | {_cell(spec.allowed)} | {_cell(spec.description)} |\n"


def markdown() -> str:
    """The whole reference page."""
    options = "".join(f"- `{option}`\n" for option in ALLOWED_SERVER_OPTIONS)
    retired = "".join(f"- `{key}`: {why}.\n" for key, why in RETIRED_SETTINGS.items())
    return (
        HEADER
        + "".join(_row(spec) for spec in SETTINGS)
        + "\n## Options allowed in GLIDEIN_TRITON_SERVER_ARGS\n\n"
        + "Written as `--option=value`. Ports, addresses, the model repository, the model control mode\n"
        + "and API restrictions are set by the plugin and cannot be changed here.\n\n"
        + options
        + "\n## Retired settings\n\n"
        + "A glidein that still sets one of these starts as if it were not set, and says why in its log and\n"
        + "in the `TritonIgnoredSettings` metric of its error_gen report.\n\n"
        + retired
    )


def main(argv: Sequence[str] | None = None) -> int:
    return generated_doc.main("settings-doc", __doc__, markdown, argv)
