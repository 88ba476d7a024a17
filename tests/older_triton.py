"""STAND-IN tritonserver binaries of older Triton releases, for the release-detection tests.

Not Triton: a bash script in front of the real tritonserver (the nvidia-pytriton wheel's, 2.51) that behaves
as an older release's command line does. Options added after that release are missing from its ``--help``
and refused like tritonserver refuses an unknown option (getopt's "unrecognized option '...'", the usage
text, exit 1); everything else goes to the real server.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .conftest import write_executable

#: option -> (major, minor) of the first release with it, read from the server's sources (independently of
#: glidein_triton.worker.triton_release, which these stand-ins test).
ADDED = {
    "--log-file": (2, 26),
    "--grpc-restricted-protocol": (2, 33),
    "--metrics-address": (2, 34),
    "--http-restricted-api": (2, 40),
    "--model-load-retry-count": (2, 42),
}

SCRIPT = """#!/bin/bash
# STAND-IN for tritonserver {major}.{minor} (tests/older_triton.py): refuses the options it did not have.
real={real}
missing=({missing})
for argument in "$@"; do
    for option in "${{missing[@]}}"; do
        if [ "${{argument%%=*}}" = "$option" ]; then
            echo "$real: unrecognized option '$argument'" >&2
            echo "Usage: tritonserver [options]" >&2
            exit 1
        fi
    done
done
if [ "$1" = --help ] && [ {hide_help} = 0 ]; then
    # The real usage text without the missing options' entries (an option line and its indented text).
    "$real" --help 2>&1 | awk -v missing=" ${{missing[*]}} " '
        /^  --/ {{ split($1, word, " "); skip = index(missing, " " word[1] " ") > 0 }}
        !skip {{ print }}' >&2
    exit 1
fi
[ "$1" = --help ] && {{ echo "tritonserver: no usage text in this build" >&2; exit 1; }}
exec "$real" "$@"
"""


def older_tritonserver(path: Path, real: Path, release: tuple[int, int], help_text: bool = True) -> Path:
    """A tritonserver of ``release`` at ``path``, running ``real``; ``help_text=False``: --help says nothing."""
    missing = [option for option, first in ADDED.items() if first > release]
    return write_executable(
        path,
        SCRIPT.format(
            major=release[0],
            minor=release[1],
            real=shlex.quote(str(real)),
            missing=" ".join(missing),
            hide_help=0 if help_text else 1,
        ),
    )
