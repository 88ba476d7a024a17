"""Logging set-up for the worker entry points: stderr, with timestamps, into the glidein's logs."""

from __future__ import annotations

import logging
import os
import sys


def configure(name: str) -> None:
    """Log to stderr (glidein_startup.sh keeps a script's stderr); debug when GLIDEIN_TRITON_DEBUG is set."""
    level = logging.DEBUG if os.environ.get("GLIDEIN_TRITON_DEBUG") else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    root = logging.getLogger("glidein_triton")
    root.handlers[:] = [handler]
    root.setLevel(level)
