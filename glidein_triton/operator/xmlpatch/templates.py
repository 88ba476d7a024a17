"""The jinja2 templates in factory_xml/ and frontend_config/, shipped in the wheel as package data.

Template names are ``<directory>/<file>``, e.g. ``factory_xml/entry_attrs.xml.j2``. A rendered template
is a :class:`Fragment`: XML elements that the patchers compare with a file and insert where missing.
"""

from __future__ import annotations

import functools
from importlib import resources

import jinja2
from lxml import etree

from glidein_triton.operator.xmlpatch.source import SourceDocument

#: template directory -> the package it is installed as (pyproject.toml maps the one onto the other)
TEMPLATE_PACKAGES = {
    "factory_xml": "glidein_triton.factory_xml",
    "frontend_config": "glidein_triton.frontend_config",
}


def template_source(name: str) -> str | None:
    """A template's text, or None when there is no such template."""
    directory, _, file_name = name.partition("/")
    package = TEMPLATE_PACKAGES.get(directory)
    if package is None:
        return None
    resource = resources.files(package).joinpath(file_name)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def template_names() -> list[str]:
    """Every template, for the tests that render them all."""
    return sorted(
        f"{directory}/{resource.name}"
        for directory, package in TEMPLATE_PACKAGES.items()
        for resource in resources.files(package).iterdir()
        if resource.name.endswith(".j2")
    )


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(template_source),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, /, **values: object) -> str:
    return environment().get_template(template).render(**values)


class Fragment:
    """A rendered template: its top-level elements, parsed, and the text of any of its elements."""

    def __init__(self, text: str) -> None:
        self.document = SourceDocument(f"<fragment>\n{text}</fragment>".encode(), "template")

    @classmethod
    def render(cls, template: str, /, **values: object) -> Fragment:
        return cls(render(template, **values))

    @property
    def elements(self) -> list[etree._Element]:
        return [element for element in self.document.root if isinstance(element.tag, str)]

    def text(self, element: etree._Element) -> str:
        """The element's text, its lines moved left so that the element starts at column 0."""
        span = self.document.span(element)
        column = len(self.document.indent_before(span.start) or "")
        first, *rest = self.document.text(span.start, span.end).split("\n")
        return "\n".join([first, *(line[column:] if not line[:column].strip() else line for line in rest)])
