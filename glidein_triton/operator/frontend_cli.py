"""``glidein-triton frontend-xml``: Triton images and a Triton group in a frontend.xml."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from glidein_triton.operator.frontend_patch import (
    DEFAULT_SERVER_IMAGE,
    IMAGE_SETTING,
    IMAGES_DICT,
    SERVER_KEY,
    FrontendOptions,
    container_warnings,
    plan_edits,
    warnings,
)
from glidein_triton.operator.xmlpatch.command import EXIT_CODES, Patched, patch_file
from glidein_triton.operator.xmlpatch.edit import run_passes
from glidein_triton.operator.xmlpatch.source import SourceDocument


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glidein-triton frontend-xml",
        description=f"Set the Triton server image ({IMAGE_SETTING}) and, with --group, make that group send "
        "jobs with +RequiresTriton = True to entries that offer Triton, with the Triton switch on. Prints a "
        "unified diff; changes the file only with --in-place. Running it again changes nothing.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="the frontend's frontend.xml")
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
        "--overwrite", action="store_true", help="replace conflicting values instead of failing"
    )
    parser.add_argument("--in-place", action="store_true", help="write the changes (after a FILE.bak backup)")
    return parser


def options_from(arguments: argparse.Namespace) -> FrontendOptions:
    """The options, or ValueError naming what is wrong with the command line."""
    if arguments.create_group and not arguments.group:
        raise ValueError("--create-group needs --group NAME")
    if arguments.no_images and not arguments.group:
        raise ValueError("nothing to do: give --group NAME, or leave out --no-images")
    image = "" if arguments.no_images else arguments.server_image.strip()
    if not arguments.no_images and (not image or "," in image):
        raise ValueError(f"server image {image!r}: give a path or URI without commas")
    images = {SERVER_KEY: image} if image and arguments.images_dict else {}
    server_image = "" if arguments.images_dict else image
    return FrontendOptions(arguments.group, arguments.create_group, images, arguments.overwrite, server_image)


def patch(data: bytes, label: str, options: FrontendOptions) -> Patched:
    """The file with glidein-triton added (PatchError when it cannot be)."""
    patched, encoding = run_passes(data, label, lambda document: plan_edits(document, options))
    return Patched(
        patched, encoding, warnings(options) + container_warnings(SourceDocument(data, label), options)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    arguments = parser.parse_args(argv)
    try:
        options = options_from(arguments)
    except ValueError as error:
        parser.error(str(error))
    return patch_file(
        arguments.file,
        lambda data, label: patch(data, label, options),
        arguments.in_place,
        sys.stdout,
        sys.stderr,
    )
