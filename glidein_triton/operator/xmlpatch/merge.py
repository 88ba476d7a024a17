"""Keep one element per name in a container: add the missing ones, compare the ones already there.

GlideinWMS parsers do not always notice duplicate names (the factory keeps both ``<attr>``s), so an
element that is already there is never added again: it is compared, attribute by attribute, with what the
template wants, taking the parser's default for an attribute that is not written. A difference is a
conflict: a clear error, or with ``overwrite`` the differing values are set in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lxml import etree

from glidein_triton.operator.xmlpatch.edit import Plan, wrap
from glidein_triton.operator.xmlpatch.source import PatchError
from glidein_triton.operator.xmlpatch.templates import Fragment

#: tag -> XML attribute -> the value a GlideinWMS parser uses when the attribute is not written
Defaults = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Wanted:
    """An element a template wants in the file (parsed from the rendered fragment)."""

    fragment: Fragment
    element: etree._Element

    @property
    def text(self) -> str:
        return self.fragment.text(self.element)


def wanted_elements(fragment: Fragment) -> list[Wanted]:
    return [Wanted(fragment, element) for element in fragment.elements]


@dataclass(frozen=True)
class Difference:
    """One way an existing element differs from the wanted one (``child`` set: a missing child)."""

    element: etree._Element
    attribute: str
    have: str | None
    want: str
    child: Wanted | None = None

    def describe(self) -> str:
        if self.child is not None:
            return f"it has no <{self.child.element.tag}>"
        have = f"{self.attribute} is not set" if self.have is None else f"{self.attribute}={self.have!r}"
        return f"{have} where this command sets {self.attribute}={self.want!r}"


def differences(existing: etree._Element, wanted: Wanted, defaults: Defaults) -> list[Difference]:
    """What differs between an element in the file and the wanted one, children included."""
    tag_defaults = defaults.get(str(wanted.element.tag), {})
    found = []
    for name, value in wanted.element.attrib.items():
        have = existing.get(str(name), tag_defaults.get(str(name)))
        if have != value:
            found.append(Difference(existing, str(name), have, str(value)))
    for child in wanted.element:
        if not isinstance(child.tag, str):
            continue
        child_wanted = Wanted(wanted.fragment, child)
        present = existing.find(child.tag)
        if present is None:
            found.append(Difference(existing, "", None, "", child_wanted))
        else:
            found.extend(differences(present, child_wanted, defaults))
    return found


@dataclass(frozen=True)
class MergeContext:
    """Where the elements go (for messages), how to compare them, and whether to overwrite."""

    where: str
    defaults: Defaults
    overwrite: bool


def describe_element(element: etree._Element, key: str) -> str:
    return f"<{element.tag}> {key!r}"


def resolve(
    plan: Plan, present: Sequence[etree._Element], wanted: Wanted, key: str, context: MergeContext
) -> None:
    """Leave an equal element alone; otherwise overwrite it or raise a conflict."""
    found = [
        difference for element in present for difference in differences(element, wanted, context.defaults)
    ]
    if not found:
        return
    label = describe_element(wanted.element, key)
    if len(present) > 1:
        raise PatchError(
            f"{context.where}: {label} is there {len(present)} times, with other values; keep one"
        )
    if not context.overwrite:
        details = "; ".join(difference.describe() for difference in found)
        raise PatchError(
            f"{context.where}: {label} is already there: {details}. Pass --overwrite to replace it"
        )
    for difference in found:
        if difference.child is not None:
            plan.insert(difference.element, difference.child.text)
        else:
            plan.set_attribute(difference.element, difference.attribute, difference.want)


def ensure_elements(
    plan: Plan,
    parent: etree._Element,
    container_tag: str,
    wanted: Sequence[Wanted],
    key: Callable[[etree._Element], str],
    context: MergeContext,
) -> None:
    """Make ``parent/container_tag`` hold each wanted element once (the container is created if needed)."""
    container = parent.find(container_tag)
    missing = []
    for item in wanted:
        name = key(item.element)
        present = [] if container is None else [child for child in container if _same(child, item, key, name)]
        if present:
            resolve(plan, present, item, name, context)
        else:
            missing.append(item.text)
    if not missing:
        return
    if container is None:
        plan.insert(parent, wrap(container_tag, missing))
        return
    for text in missing:
        plan.insert(container, text)


def _same(child: etree._Element, item: Wanted, key: Callable[[etree._Element], str], name: str) -> bool:
    return child.tag == item.element.tag and key(child) == name


def append_item(raw: str, item: str, separator: str) -> str:
    """A list value (``a,b`` or ``a;b``) as written, with one more item at its end."""
    if not raw.strip():
        return item
    if raw.rstrip().endswith(separator):
        return raw + item
    return raw + separator + item
