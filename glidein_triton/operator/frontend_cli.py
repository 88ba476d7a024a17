"""``glidein-triton frontend-xml``: Triton images and a Triton group in a frontend.xml."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from glidein_triton.operator.frontend_patch import (
    DEFAULT_SERVER_IMAGE,
    IMAGE_SETTING,
    IMAGES_DICT,
    SERVER_KEY,
    FrontendOptions,
    container_warnings,
    other_group_warnings,
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
from glidein_triton.worker.settings import DEFAULTS, parse_pool_name


def argument_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "glidein-triton frontend-xml",
        f"Set the Triton server image ({IMAGE_SETTING}) and, with --group, make that group send jobs with "
        "+RequiresTriton = True to entries that offer Triton, with the Triton switch on.",
        "the frontend's frontend.xml",
    )
    parser.add_argument(
        "--group", metavar="NAME", help="the group for Triton jobs (without it: only the images)"
    )
    parser.add_argument(
        "--create-group", action="store_true", help="add the group when there is none by that name"
    )
    parser.add_argument(
        "--server-image",
        default=DEFAULT_SERVER_IMAGE,
        help="the server image, a path on CVMFS (default: %(default)s, Triton 2.42)",
    )
    parser.add_argument(
        "--images-dict",
        action="store_true",
        help=f"put the server image into {IMAGES_DICT} as its {SERVER_KEY} key (merged into an existing "
        f"value) instead of {IMAGE_SETTING}",
    )
    parser.add_argument("--no-images", action="store_true", help="set no server image")
    parser.add_argument(
        "--group-containers",
        action="store_true",
        help="give the group GLIDEIN_Singularity_Use = PREFERRED (and the job wrapper) also when the "
        "frontend keeps containers off (e.g. a global DISABLE_GWMS): a group value wins over the global one",
    )
    parser.add_argument(
        "--exclude-triton-jobs",
        action="store_true",
        help="add && (RequiresTriton =!= True) to the job query_expr of the other enabled groups, so that "
        "only the Triton group requests glideins for Triton jobs",
    )
    parser.add_argument(
        "--pool",
        choices=("server", "client"),
        help="make the group's glideins pool servers (for lease jobs, +RequiresTritonPoolServer = True, on "
        "the factory's pool server entries) or pool clients (for jobs with +RequiresTritonPool = True); "
        "docs/journey-pool.md",
    )
    parser.add_argument(
        "--pool-name", metavar="NAME", help="GLIDEIN_TRITON_POOL_NAME (with --pool; default: default)"
    )
    add_write_options(parser)
    return parser


def options_from(arguments: argparse.Namespace) -> FrontendOptions:
    """The options, or ValueError naming what is wrong with the command line."""
    if arguments.create_group and not arguments.group:
        raise ValueError("--create-group needs --group NAME")
    for option, given in (
        ("--group-containers", arguments.group_containers),
        ("--exclude-triton-jobs", arguments.exclude_triton_jobs),
    ):
        if given and not arguments.group:
            raise ValueError(f"{option} needs --group NAME")
    if arguments.pool_name is not None and not arguments.pool:
        raise ValueError("--pool-name needs --pool server or --pool client")
    if arguments.pool and not arguments.group:
        raise ValueError("--pool needs --group NAME: the pool role is a group's")
    pool_name = parse_pool_name("--pool-name", arguments.pool_name or DEFAULTS["GLIDEIN_TRITON_POOL_NAME"])
    if arguments.no_images and not arguments.group:
        raise ValueError("nothing to do: give --group NAME, or leave out --no-images")
    image = "" if arguments.no_images else arguments.server_image.strip()
    if not arguments.no_images and (not image or "," in image):
        raise ValueError(f"server image {image!r}: give a path or URI without commas")
    images = {SERVER_KEY: image} if image and arguments.images_dict else {}
    server_image = "" if arguments.images_dict else image
    return FrontendOptions(
        arguments.group,
        arguments.create_group,
        images,
        arguments.overwrite,
        server_image,
        containers=arguments.group_containers,
        exclude_elsewhere=arguments.exclude_triton_jobs,
        pool=arguments.pool or "",
        pool_name=pool_name,
    )


def notes(document: SourceDocument, options: FrontendOptions) -> list[str]:
    return warnings(options) + container_warnings(document, options) + other_group_warnings(document, options)


def patch(data: bytes, label: str, options: FrontendOptions) -> Patched:
    """The file with glidein-triton added (PatchError when it cannot be)."""
    return apply(data, label, options, plan_edits, notes)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(argument_parser(), options_from, patch, argv)
