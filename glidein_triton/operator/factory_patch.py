"""Add glidein-triton to entries of a factory glideinWMS.xml (or of a config.d file), in place.

Where things go, and why (creation/web_base/glidein_startup.sh processes file lists in this order: main
file_list, client/group pre-entry lists, **entry file_list**, main precvmfs_file_list, **main at_file_list
(singularity_setup.sh)**, client and group lists, **main after_file_list**):

* the startup and periodic scripts go in the global ``<files>`` with ``after_entry="True"`` (the factory
  accepts it only there), i.e. in main after_file_list, after singularity_setup.sh has published
  SINGULARITY_PATH. An entry file would run before it;
* the worker tarball goes in the entry's ``<files>``: it is unpacked before the startup script runs, and
  only Triton entries download it;
* the ``GLIDEIN_TRITON*`` switch and settings, and ``GLIDEIN_Resource_Slots``, go in the entry's ``<attrs>``.

For an entry_set, its ``<attrs>`` and ``<files>`` (shared by its entries) are patched: name it by alias. An
``<entry>`` placed directly inside ``<entry_sets>`` is an entry like those in ``<entries>``, as for
GlideinWMS's parser (creation/lib/factoryXmlConfig.py: the class follows the tag, and ``get_entries`` takes
both lists; its unittests' config.d/Dev_Sites.xml has only such entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from lxml import etree

from glidein_triton import __version__
from glidein_triton.operator import payload
from glidein_triton.operator.xmlpatch.edit import Edit, Plan, escape_attribute
from glidein_triton.operator.xmlpatch.merge import (
    MergeContext,
    Wanted,
    append_item,
    ensure_elements,
    wanted_elements,
)
from glidein_triton.operator.xmlpatch.source import PatchError, SourceDocument
from glidein_triton.operator.xmlpatch.templates import Fragment, render
from glidein_triton.worker import images

DEFAULT_PAYLOAD_DIR = "/var/lib/gwms-factory/glidein-triton"
DEFAULT_GPU_SLOTS = "GPUs,type=main"
DEFAULT_PERIOD = 300
#: Attributes printed by the periodic script reach the machine ad under their own names (e.g. TritonReady).
DEFAULT_PERIODIC_PREFIX = "NOPREFIX"
RESOURCE_SLOTS = "GLIDEIN_Resource_Slots"
IMAGES_DICT = images.IMAGES_DICT
IMAGE_SETTING = "GLIDEIN_TRITON_IMAGE"

#: What the factory uses for an XML attribute that is not written (creation/lib/factory_defaults.xml).
PARSER_DEFAULTS = {
    "attr": {
        "const": "True",
        "glidein_publish": "False",
        "job_publish": "False",
        "parameter": "True",
        "publish": "True",
        "type": "string",
    },
    "file": {
        "after_entry": "False",
        "const": "True",
        "executable": "False",
        "period": "0",
        "prefix": "GLIDEIN_PS_",
        "untar": "False",
        "wrapper": "False",
    },
    "untar_options": {"cond_attr": "TRUE"},
}


@dataclass(frozen=True)
class FactoryOptions:
    """What to add: to which entries, the payload location, settings and scripts."""

    entries: tuple[str, ...]
    payload_dir: str = DEFAULT_PAYLOAD_DIR
    #: (GLIDEIN_TRITON* key, value) pairs for the entry <attrs>, the switch first
    settings: tuple[tuple[str, str], ...] = (("GLIDEIN_TRITON", "True"),)
    #: GLIDEIN_Resource_Slots value that gives GPUs to the glidein; "" adds none
    gpu_slots: str = DEFAULT_GPU_SLOTS
    #: seconds between runs of the periodic script; 0 leaves it out
    period: int = DEFAULT_PERIOD
    periodic_prefix: str = DEFAULT_PERIODIC_PREFIX
    #: add the scripts to the global <files> of this file (not when the main file already has them)
    global_files: bool = True
    overwrite: bool = False


def template_values(options: FactoryOptions) -> dict[str, object]:
    """Everything the factory_xml templates use."""
    return {
        "version": __version__,
        "payload_dir": options.payload_dir.rstrip("/") or "/",
        "tarball": payload.WORKER_TARBALL,
        "untar_dir": payload.UNTAR_DIR,
        "code_dir_attribute": payload.CODE_DIR_ATTRIBUTE,
        "setup_script": payload.SETUP_SCRIPT,
        "periodic_script": payload.PERIODIC_SCRIPT,
        "period": options.period,
        "periodic_prefix": options.periodic_prefix,
        "settings": options.settings,
        "gpu_slots": options.gpu_slots,
    }


def snippet(options: FactoryOptions) -> str:
    """All the factory XML glidein-triton needs, with comments saying where each part goes."""
    return render("factory_xml/snippet.xml.j2", **template_values(options))


def file_key(element: etree._Element) -> str:
    """A file's name on the worker node (relfname, else the last part of absfname): the factory's key."""
    return element.get("relfname") or PurePosixPath(element.get("absfname", "")).name


def attr_key(element: etree._Element) -> str:
    return element.get("name", "")


def _elements(root: etree._Element, path: str, name: str) -> list[etree._Element]:
    found = root.xpath(path, name=name)
    return [item for item in found if isinstance(item, etree._Element)] if isinstance(found, list) else []


def _strings(root: etree._Element, path: str, name: str = "") -> list[str]:
    found = root.xpath(path, name=name)
    return [str(item) for item in found] if isinstance(found, list) else []


#: Entries as GlideinWMS's parser finds them: in <entries> or directly in <entry_sets>; entry_sets by alias.
ENTRIES = "entries/entry[@name=$name] | entry_sets/entry[@name=$name] | entry_sets/entry_set[@alias=$name]"
ENTRY_NAMES = "entries/entry/@name | entry_sets/entry/@name | entry_sets/entry_set/@alias"


def find_entry(root: etree._Element, name: str, label: str) -> etree._Element:
    """The entry (in <entries>, or directly in <entry_sets>) or entry_set (by alias) called ``name``."""
    found = _elements(root, ENTRIES, name)
    if len(found) == 1:
        return found[0]
    if found:
        raise PatchError(f"{label}: {len(found)} entries are called {name!r}; the factory needs unique names")
    sets = _strings(root, "entry_sets/entry_set[entries/entry/@name=$name]/@alias", name)
    if sets:
        raise PatchError(
            f"{label}: entry {name!r} is part of entry_set {sets[0]!r}, whose <attrs> and <files> all its "
            f"entries share: use --entry {sets[0]}"
        )
    known = _strings(root, ENTRY_NAMES)
    listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") if known else "none"
    raise PatchError(
        f"{label}: no entry called {name!r} (entries in this file: {listed}; "
        "commented-out entries do not count)"
    )


def has_gpus(slots: str) -> bool:
    """Whether a GLIDEIN_Resource_Slots value already has a GPUs resource (``GPUs,...`` or ``name=GPUs``)."""
    for resource in slots.split(";"):
        first = resource.split(",", 1)[0].strip()
        if first.lower().removeprefix("name=") == "gpus":
            return True
    return False


def _merge_gpu_slots(plan: Plan, existing: Sequence[etree._Element], wanted: str) -> None:
    """Add the GPUs resource to GLIDEIN_Resource_Slots values that have none, keeping their resources."""
    for element in existing:
        if has_gpus(element.get("value", "")):
            continue
        raw = plan.raw_attribute(element, "value")
        if raw is None:
            plan.set_attribute(element, "value", wanted)
        else:
            plan.set_raw_attribute(
                element, "value", append_item(raw[0], escape_attribute(wanted, raw[1]), ";")
            )


def _check_scripts_not_in_entry(entry: etree._Element, where: str) -> None:
    for element in entry.iterfind("files/file"):
        if file_key(element) in (payload.SETUP_SCRIPT, payload.PERIODIC_SCRIPT):
            raise PatchError(
                f"{where}: {file_key(element)} is listed in the entry's <files>, where it would run before "
                "singularity_setup.sh; remove it there (this command lists it in the global <files>)"
            )


def _patch_entry(
    plan: Plan, entry: etree._Element, attrs: list[Wanted], files: list[Wanted], context: MergeContext
) -> None:
    _check_scripts_not_in_entry(entry, context.where)
    ensure_elements(plan, entry, "files", files, file_key, context)
    slots = [element for element in entry.iterfind("attrs/attr") if attr_key(element) == RESOURCE_SLOTS]
    if slots:
        wanted_slots = [item for item in attrs if attr_key(item.element) == RESOURCE_SLOTS]
        for item in wanted_slots:
            _merge_gpu_slots(plan, slots, item.element.get("value", ""))
        attrs = [item for item in attrs if item not in wanted_slots]
    ensure_elements(plan, entry, "attrs", attrs, attr_key, context)


def plan_edits(document: SourceDocument, options: FactoryOptions) -> list[Edit]:
    """The edits one pass wants (none when the file already has everything)."""
    document.require_root("glidein", "factory")
    root, label = document.root, document.label
    plan = Plan(document)
    values = template_values(options)
    if options.global_files:
        files = wanted_elements(Fragment.render("factory_xml/global_files.xml.j2", **values))
        context = MergeContext(f"{label}: global <files>", PARSER_DEFAULTS, options.overwrite)
        ensure_elements(plan, root, "files", files, file_key, context)
    attrs = wanted_elements(Fragment.render("factory_xml/entry_attrs.xml.j2", **values))
    entry_files = wanted_elements(Fragment.render("factory_xml/entry_files.xml.j2", **values))
    for name in dict.fromkeys(options.entries):
        entry = find_entry(root, name, label)
        context = MergeContext(f"{label}: {entry.tag} {name!r}", PARSER_DEFAULTS, options.overwrite)
        _patch_entry(plan, entry, attrs, entry_files, context)
    return plan.edits()


def images_dict_warnings(root: etree._Element, entry: etree._Element, where: str, image: str) -> list[str]:
    """A constant SINGULARITY_IMAGES_DICT (the factory's default) keeps any frontend value out, with its
    tritonserver key; a remote tritonserver image there costs every glidein a download."""
    found = _elements(entry, "attrs/attr[@name=$name]", IMAGES_DICT) or _elements(
        root, "attrs/attr[@name=$name]", IMAGES_DICT
    )
    if not found:
        return []
    element = found[-1]
    server = images.images_dict(element.get("value", "")).get(images.SERVER_IMAGE_KEY, "")
    notes = []
    constant = element.get("const", PARSER_DEFAULTS["attr"]["const"]).strip().lower() == "true"
    if constant and not server and not image:
        notes.append(
            f'{where} sets {IMAGES_DICT} const="True": a frontend\'s value never arrives, nor its '
            f"tritonserver key; give the server image here (--image, i.e. {IMAGE_SETTING}) or in the "
            f"frontend's {IMAGE_SETTING} (glidein-triton frontend-xml)"
        )
    if server and not image and images.is_remote(server):
        notes.append(f"{where}: the tritonserver key of {IMAGES_DICT}: {images.remote_warning(server)}")
    return notes


def warnings(document: SourceDocument, options: FactoryOptions) -> list[str]:
    """Things the operator should know that do not stop the patch."""
    image = dict(options.settings).get(IMAGE_SETTING, "")
    found = [images.remote_warning(image)] if images.is_remote(image) else []
    for name in dict.fromkeys(options.entries):
        entry = find_entry(document.root, name, document.label)
        found += images_dict_warnings(document.root, entry, f"{document.label}: {entry.tag} {name!r}", image)
        layout = (_strings(entry, "config/submit/@slots_layout") or ["fixed"])[0]
        if options.gpu_slots and layout != "partitionable":
            found.append(
                f"{document.label}: {entry.tag} {name!r} has slots_layout={layout!r}: GlideinWMS needs "
                'partitionable slots for GPUs discovered at run time (<submit slots_layout="partitionable">)'
            )
    return found
