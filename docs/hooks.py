"""MkDocs hook: the site shows the package version from its single source, glidein_triton/__init__.py."""

from __future__ import annotations

from mkdocs.config.defaults import MkDocsConfig

from glidein_triton import __version__


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Put the version under the site name (the readthedocs theme shows ``extra.version``)."""
    config.extra["version"] = __version__
    return config
