"""``glidein-triton factory-xml``: add glidein-triton to factory entries of glideinWMS.xml."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from glidein_triton.operator import payload
from glidein_triton.operator.factory_patch import (
    DEFAULT_GPU_SLOTS,
    DEFAULT_PAYLOAD_DIR,
    DEFAULT_PERIOD,
    DEFAULT_PERIODIC_PREFIX,
    FactoryOptions,
    plan_edits,
    warnings,
)
from glidein_triton.operator.xmlpatch.command import (
    Patched,
    add_write_options,
    apply,
    command_parser,
    run_command,
)
from glidein_triton.operator.xmlpatch.source import SourceDocument
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.settings import DEFAULTS, RETIRED_SETTINGS, Settings, closest_setting
from glidein_triton.worker.word_rules import truth_value


def argument_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "glidein-triton factory-xml",
        "Add glidein-triton to factory entries: the worker tarball and the GLIDEIN_TRITON* settings in each "
        "entry, the startup and periodic scripts in the global <files>.",
        "glideinWMS.xml, or the config.d/*.xml file with the entry",
    )
    parser.add_argument(
        "--entry",
        action="append",
        required=True,
        metavar="NAME",
        help="entry name or entry_set alias (repeatable)",
    )
    parser.add_argument(
        "--payload-dir",
        default=DEFAULT_PAYLOAD_DIR,
        help="directory on the factory host with the files of `glidein-triton payload` "
        "(default: %(default)s)",
    )
    parser.add_argument("--image", help="GLIDEIN_TRITON_IMAGE: the server image (default: the frontend's)")
    parser.add_argument("--model-repository", help="GLIDEIN_TRITON_MODEL_REPOSITORY: the models served")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting of docs/settings.md, e.g. GLIDEIN_TRITON_REQUIRED=True (repeatable)",
    )
    parser.add_argument(
        "--pool",
        choices=("server", "client"),
        help="GLIDEIN_TRITON_POOL: a pool server entry (GPUs, serving other glideins' jobs) or a client "
        "entry (its jobs use the pool's servers); docs/journey-pool.md",
    )
    parser.add_argument(
        "--pool-name", metavar="NAME", help="GLIDEIN_TRITON_POOL_NAME (with --pool; default: default)"
    )
    parser.add_argument(
        "--address",
        metavar="IPV4",
        help="GLIDEIN_TRITON_ADDRESS: the address a pool server listens on (with --pool server)",
    )
    gpus = parser.add_mutually_exclusive_group()
    gpus.add_argument(
        "--gpu-slots",
        default=DEFAULT_GPU_SLOTS,
        help="GLIDEIN_Resource_Slots GPUs resource (default: %(default)s)",
    )
    gpus.add_argument(
        "--no-gpu-slots", action="store_true", help="add no GLIDEIN_Resource_Slots (a CPU entry)"
    )
    periodic = parser.add_mutually_exclusive_group()
    periodic.add_argument(
        "--period",
        type=int,
        default=DEFAULT_PERIOD,
        help="seconds between periodic checks (default: %(default)s)",
    )
    periodic.add_argument("--no-periodic", action="store_true", help="leave the periodic script out")
    parser.add_argument(
        "--periodic-prefix",
        default=DEFAULT_PERIODIC_PREFIX,
        help="prefix of the periodic script's machine-ad attributes (default: %(default)s, i.e. none)",
    )
    parser.add_argument(
        "--no-global-files",
        action="store_true",
        help="leave the global <files> alone (e.g. patching a config.d file when glideinWMS.xml "
        "already has the scripts)",
    )
    add_write_options(parser)
    return parser


def collect_settings(arguments: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The GLIDEIN_TRITON* keys for the entry <attrs>, validated as the worker will validate them."""
    values = {"GLIDEIN_TRITON": "True"}
    if arguments.image:
        values["GLIDEIN_TRITON_IMAGE"] = arguments.image
    if arguments.model_repository:
        values["GLIDEIN_TRITON_MODEL_REPOSITORY"] = arguments.model_repository
    if not arguments.no_periodic and str(arguments.period) != DEFAULTS["GLIDEIN_TRITON_PERIODIC_PERIOD"]:
        # The periodic script bounds its waits by its period: tell it the one the <file> gets.
        values["GLIDEIN_TRITON_PERIODIC_PERIOD"] = str(arguments.period)
    values.update(pool_settings(arguments))
    for item in arguments.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise ConfigError(f"--set {item!r}: use KEY=VALUE with KEY one of {', '.join(DEFAULTS)}")
        if key in RETIRED_SETTINGS:
            raise ConfigError(f"--set {item!r}: {key} is retired: {RETIRED_SETTINGS[key]}")
        if key not in DEFAULTS:
            close = closest_setting(key)
            if close:
                raise ConfigError(f"--set {item!r}: {key} is not a setting: did you mean {close}?")
            raise ConfigError(f"--set {item!r}: {key} is not a setting: use one of {', '.join(DEFAULTS)}")
        if key in POOL_KEYS and key in values and values[key] != value:
            raise ConfigError(f"--set {item!r} contradicts {POOL_KEYS[key]} {values[key]}: give one of them")
        values[key] = value
    if values.get(POOL_SETTING) == "server" and truth_value(values.get(REMOTE_SETTING, "True")) is False:
        raise ConfigError(
            f"a pool server serves other nodes: it is always remote, so "
            f"{REMOTE_SETTING}={values[REMOTE_SETTING]} contradicts --pool server; leave it out"
        )
    Settings.from_config(values)
    return tuple(values.items())


POOL_SETTING = "GLIDEIN_TRITON_POOL"
POOL_NAME_SETTING = "GLIDEIN_TRITON_POOL_NAME"
ADDRESS_SETTING = "GLIDEIN_TRITON_ADDRESS"
REMOTE_SETTING = "GLIDEIN_TRITON_REMOTE"
#: the settings --pool, --pool-name and --address set, and the option of each
POOL_KEYS = {POOL_SETTING: "--pool", POOL_NAME_SETTING: "--pool-name", ADDRESS_SETTING: "--address"}


def pool_settings(arguments: argparse.Namespace) -> dict[str, str]:
    """The pool's keys from --pool, --pool-name and --address; ConfigError for one that cannot be."""
    if arguments.pool is None:
        for option, given in (("--pool-name", arguments.pool_name), ("--address", arguments.address)):
            if given:
                raise ConfigError(f"{option} needs --pool server or --pool client")
        return {}
    if arguments.address and arguments.pool != "server":
        raise ConfigError("--address is where a pool server listens: it needs --pool server")
    values = {
        POOL_SETTING: arguments.pool,
        POOL_NAME_SETTING: arguments.pool_name or DEFAULTS[POOL_NAME_SETTING],
    }
    if arguments.address:
        values[ADDRESS_SETTING] = arguments.address
    return values


def options_from(arguments: argparse.Namespace) -> FactoryOptions:
    if arguments.period <= 0:
        raise ConfigError(f"--period {arguments.period}: use a number of seconds > 0, or --no-periodic")
    if not arguments.periodic_prefix.isidentifier():
        raise ConfigError(f"--periodic-prefix {arguments.periodic_prefix!r}: use letters, digits and '_'")
    return FactoryOptions(
        entries=tuple(arguments.entry),
        payload_dir=str(Path(arguments.payload_dir).absolute()),
        settings=collect_settings(arguments),
        gpu_slots="" if arguments.no_gpu_slots else arguments.gpu_slots,
        period=0 if arguments.no_periodic else arguments.period,
        periodic_prefix=arguments.periodic_prefix,
        global_files=not arguments.no_global_files,
        overwrite=arguments.overwrite,
    )


def payload_warnings(options: FactoryOptions) -> list[str]:
    """Files the XML will reference that are not in the payload directory (yet)."""
    names = [payload.WORKER_TARBALL]
    if options.global_files:
        names.append(payload.SETUP_SCRIPT)
        if options.period:
            names.append(payload.PERIODIC_SCRIPT)
    missing = [name for name in names if not (Path(options.payload_dir) / name).is_file()]
    if not missing:
        return []
    return [
        f"{options.payload_dir} has no {', '.join(missing)}: run "
        f"`glidein-triton payload {options.payload_dir}` on the factory host before reconfiguring the factory"
    ]


def pool_warnings(options: FactoryOptions) -> list[str]:
    """A pool server entry whose glideins get no GPUs serves the pool from CPUs."""
    if dict(options.settings).get(POOL_SETTING) != "server" or options.gpu_slots:
        return []
    return [
        "--pool server with --no-gpu-slots: the entry's glideins get no GPUs, so they serve the pool's jobs "
        "on CPUs (leave out --no-gpu-slots for a GPU entry)"
    ]


def notes(document: SourceDocument, options: FactoryOptions) -> list[str]:
    return warnings(document, options) + payload_warnings(options) + pool_warnings(options)


def patch(data: bytes, label: str, options: FactoryOptions) -> Patched:
    """The file with glidein-triton added (PatchError when it cannot be)."""
    return apply(data, label, options, plan_edits, notes)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(argument_parser(), options_from, patch, argv)
