"""Add glidein-triton to a frontend.xml: the server image, and a group for jobs that ask for Triton.

* The server image goes into ``GLIDEIN_TRITON_IMAGE`` (the group's ``<attrs>``, or the global ones without a
  group), which the startup script prefers over any SINGULARITY_IMAGES_DICT key.
* With ``images`` (``--images-dict``) it goes into ``SINGULARITY_IMAGES_DICT`` as the ``tritonserver`` key
  instead, the other keys kept: into the group's value if it has one; else into a new group value that
  starts with the global value's items (a group's value replaces the global one, and singularity_setup.sh
  needs the ``default`` key it had); else into the global value. No value is ever created from nothing: it
  would replace the factory's, with its ``default`` image.
* The group's match expressions are ANDed with Triton's (frontend_config/match.xml.j2): it then requests
  glideins only from entries that offer Triton, only for jobs with ``+RequiresTriton = True``, GPU jobs
  only where the entry gives GPUs; and its ``GLIDEIN_TRITON`` parameter turns the switch on.
* Containers: when neither the group nor the global ``<attrs>`` set ``GLIDEIN_Singularity_Use``, the group
  gets ``PREFERRED`` (and GlideinWMS's job wrapper when no wrapper file is listed); a value that keeps
  containers off is left, with a warning, unless ``containers`` (``--group-containers``) asks for the
  group's own ``PREFERRED`` (a group value wins over the global one; a group's own other value is a
  conflict, replaced with ``--overwrite``).
* Other groups: every enabled group whose ``<job query_expr>`` does not leave Triton jobs out also requests
  glideins for them (without Triton: the jobs cannot run there): a warning names them, and
  ``exclude_elsewhere`` (``--exclude-triton-jobs``) ANDs ``(RequiresTriton =!= True)`` to their query_expr.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from glidein_triton.operator.xmlpatch.edit import Edit, Plan, escape_attribute, wrap
from glidein_triton.operator.xmlpatch.merge import (
    MergeContext,
    Wanted,
    append_item,
    ensure_elements,
    wanted_elements,
)
from glidein_triton.operator.xmlpatch.source import PatchError, SourceDocument
from glidein_triton.operator.xmlpatch.templates import Fragment, render
from glidein_triton.worker import images as server_images
from glidein_triton.worker.runtime import CONTAINER_USES

IMAGES_DICT = server_images.IMAGES_DICT
IMAGE_SETTING = "GLIDEIN_TRITON_IMAGE"
SERVER_KEY = server_images.SERVER_IMAGE_KEY
DEFAULT_SERVER_IMAGE = server_images.DEFAULT_SERVER_IMAGE
SINGULARITY_USE = "GLIDEIN_Singularity_Use"
#: GlideinWMS's job wrapper where the frontend RPM installs it (doc/frontend/configuration.html)
DEFAULT_WRAPPER = "/var/lib/gwms-frontend/web-base/frontend/default_singularity_wrapper.sh"
#: creation/lib/cWParams.py is_valid_name, and cvWParams.py validate_names (no ".", no "XPVO" prefix)
GROUP_NAME = re.compile(r"^(?!XPVO)[A-Za-z0-9_-]+$")

#: What the frontend uses for an XML attribute that is not written (creation/lib/cWParams.py, cvWParams.py).
PARSER_DEFAULTS = {
    "attr": {"glidein_publish": "False", "job_publish": "False", "parameter": "True", "type": "string"},
    "match_attr": {"type": "string"},
    "file": {"const": "True", "executable": "False", "wrapper": "False", "untar": "False"},
}


@dataclass(frozen=True)
class FrontendOptions:
    """Which group (None: global attributes only), whether to create it, where the server image goes."""

    group: str | None = None
    create_group: bool = False
    #: SINGULARITY_IMAGES_DICT key -> image; empty: leave SINGULARITY_IMAGES_DICT alone
    images: Mapping[str, str] = field(default_factory=dict)
    overwrite: bool = False
    #: GLIDEIN_TRITON_IMAGE; empty: not set
    server_image: str = ""
    #: give the group GLIDEIN_Singularity_Use = PREFERRED even where the frontend keeps containers off
    containers: bool = False
    #: AND the Triton-jobs exclusion to the job query_expr of the other enabled groups
    exclude_elsewhere: bool = False
    #: "server" or "client": the group's glideins are pool servers or clients of ``pool_name``; "": neither
    pool: str = ""
    pool_name: str = "default"


def name_key(element: etree._Element) -> str:
    return element.get("name", "")


def _named(container: etree._Element | None, tag: str, name: str) -> list[etree._Element]:
    if container is None:
        return []
    return [child for child in container if child.tag == tag and child.get("name") == name]


def _normalized(text: str) -> str:
    return " ".join(text.split())


def is_grouped(expression: str) -> bool:
    """Whether the whole expression is in one pair of parentheses (quoted strings skipped)."""
    text = expression.strip()
    depth, quote, escaped = 0, "", False
    for position, character in enumerate(text):
        if quote:
            if character == quote and not escaped:
                quote = ""
            escaped = not escaped and character == "\\"
        elif character in "\"'":
            quote = character
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth == 0 and position < len(text) - 1:
                return False
    return text.startswith("(") and depth == 0


def _grouped(expression: str) -> str:
    return expression if is_grouped(expression) else f"({expression})"


def combine_expression(
    plan: Plan, element: etree._Element, attribute: str, wanted: str, operator: str
) -> None:
    """AND ``wanted`` to an expression attribute, unless it is already in it; a bare True is replaced."""
    current = element.get(attribute)
    if current is not None and _normalized(wanted) in _normalized(current):
        return
    raw = plan.raw_attribute(element, attribute)
    if current is None or raw is None or current.strip().lower() == "true":
        plan.set_attribute(element, attribute, wanted)
        return
    text, quote = raw
    combined = f" {operator} {_grouped(wanted)}"
    plan.set_raw_attribute(element, attribute, _grouped(text) + escape_attribute(combined, quote))


def _patch_match(plan: Plan, group: etree._Element, fragment: Fragment, where: str, overwrite: bool) -> None:
    wanted = fragment.elements[0]
    match = group.find("match")
    if match is None:
        plan.insert(group, fragment.text(wanted))
        return
    combine_expression(plan, match, "match_expr", wanted.get("match_expr", ""), "and")
    combine_expression(plan, match, "start_expr", wanted.get("start_expr", ""), "&&")
    for side in ("factory", "job"):
        wanted_side = wanted.find(side)
        if wanted_side is None:
            continue
        present = match.find(side)
        if present is None:
            plan.insert(match, fragment.text(wanted_side))
            continue
        combine_expression(plan, present, "query_expr", wanted_side.get("query_expr", ""), "&&")
        attributes = [Wanted(fragment, element) for element in wanted_side.iterfind("match_attrs/match_attr")]
        context = MergeContext(f"{where}: <{side}> match_attrs", PARSER_DEFAULTS, overwrite)
        ensure_elements(plan, present, "match_attrs", attributes, name_key, context)


def _images_target(
    root: etree._Element, group: etree._Element | None, label: str
) -> tuple[etree._Element, str]:
    """Where SINGULARITY_IMAGES_DICT takes effect for the group: (the element holding <attrs>, its name)."""
    if group is not None and _named(group.find("attrs"), "attr", IMAGES_DICT):
        return group, f"group {group.get('name')!r}"
    if _named(root.find("attrs"), "attr", IMAGES_DICT):
        if group is None:
            return root, "global <attrs>"
        return group, f"group {group.get('name')!r}"
    raise PatchError(
        f"{label}: there is no {IMAGES_DICT} to add the {SERVER_KEY} key to, and a new one would replace "
        f"the factory's (with its default image) for these glideins: use {IMAGE_SETTING} (leave out "
        "--images-dict)"
    )


def _refuse_conflicts(existing: Mapping[str, str], options: FrontendOptions, where: str) -> dict[str, str]:
    """Our keys that ``existing`` gives other images; an error unless --overwrite."""
    conflicts = {key: path for key, path in options.images.items() if existing.get(key, path) != path}
    if conflicts and not options.overwrite:
        details = "; ".join(
            f"{key} is {existing[key]!r}, this command sets {path!r}" for key, path in conflicts.items()
        )
        raise PatchError(
            f"{where}: {IMAGES_DICT} already has other images: {details}. Pass --overwrite to replace"
        )
    return conflicts


def _merge_images(
    plan: Plan, root: etree._Element, holder: etree._Element, where: str, options: FrontendOptions
) -> None:
    present = _named(holder.find("attrs"), "attr", IMAGES_DICT)
    if not present:
        # A group value replaces the global one: it starts with the global value's items.
        inherited = dict(
            server_images.images_dict_items(
                _named(root.find("attrs"), "attr", IMAGES_DICT)[-1].get("value", "")
            )
        )
        _refuse_conflicts(inherited, options, f"{where} (from the global value)")
        images = server_images.images_dict_text(list({**inherited, **options.images}.items()))
        fragment = Fragment.render("frontend_config/images_attr.xml.j2", images=images)
        context = MergeContext(where, PARSER_DEFAULTS, options.overwrite)
        ensure_elements(plan, holder, "attrs", wanted_elements(fragment), name_key, context)
        return
    if len(present) > 1:
        raise PatchError(f"{where}: {IMAGES_DICT} is set {len(present)} times (the last one wins); keep one")
    element = present[0]
    pairs = server_images.images_dict_items(element.get("value", ""))
    existing = dict(pairs)
    conflicts = _refuse_conflicts(existing, options, where)
    missing = [(key, path) for key, path in options.images.items() if key not in existing]
    raw = plan.raw_attribute(element, "value")
    if conflicts or raw is None:
        replaced = [(key, conflicts.get(key, path)) for key, path in pairs]
        plan.set_attribute(element, "value", server_images.images_dict_text(replaced + missing))
    elif missing:
        text, quote = raw
        plan.set_raw_attribute(
            element,
            "value",
            append_item(text, escape_attribute(server_images.images_dict_text(missing), quote), ","),
        )


def _find_group(root: etree._Element, options: FrontendOptions, label: str) -> etree._Element | None:
    """The group to patch; None when it is missing and --create-group asked for it (then it is added)."""
    name = options.group or ""
    found = _named(root.find("groups"), "group", name)
    if len(found) > 1:
        raise PatchError(
            f"{label}: {len(found)} groups are called {name!r}; the frontend keeps only the last"
        )
    if found:
        return found[0]
    if not options.create_group:
        known = ", ".join(name_key(group) for group in root.iterfind("groups/group")) or "none"
        raise PatchError(
            f"{label}: no group called {name!r} (groups: {known}); pass --create-group to add it"
        )
    if not GROUP_NAME.match(name):
        raise PatchError(f"{label}: {name!r} cannot be a group name: letters, digits, '_' and '-' only")
    return None


def singularity_use(root: etree._Element, group: etree._Element | None) -> str | None:
    """GLIDEIN_Singularity_Use as the frontend takes it for the group: the group's value, else the global
    one (creation/lib/cvWParamDict.py); None when neither sets it."""
    for holder in (group, root):
        found = _named(None if holder is None else holder.find("attrs"), "attr", SINGULARITY_USE)
        if found:
            return found[-1].get("value", "")
    return None


def _has_wrapper(root: etree._Element, group: etree._Element) -> bool:
    """Whether the group or the global <files> list a job wrapper (as validate_singularity looks)."""
    files = [*group.iterfind("files/file"), *root.iterfind("files/file")]
    return any(
        file.get("wrapper", "").lower() == "true" or file.get("type", "").startswith("wrapper")
        for file in files
    )


def _patch_containers(
    plan: Plan, root: etree._Element, group: etree._Element, context: MergeContext, containers: bool
) -> None:
    """Give the group GLIDEIN_Singularity_Use (and a job wrapper) when the frontend sets no value, or, with
    ``containers``, when its value keeps containers off."""
    if group.find("attrs") is None:
        return  # this pass adds them (with the switch): the next pass comes back here
    use = singularity_use(root, group)
    if use is not None and (use in CONTAINER_USES or not containers):
        return
    wanted = wanted_elements(Fragment.render("frontend_config/container_attrs.xml.j2"))
    ensure_elements(plan, group, "attrs", wanted, name_key, context)
    if not _has_wrapper(root, group):
        fragment = Fragment.render("frontend_config/wrapper_file.xml.j2", wrapper=DEFAULT_WRAPPER)
        ensure_elements(plan, group, "files", wanted_elements(fragment), _file_key, context)


def _file_key(element: etree._Element) -> str:
    return element.get("absfname", "")


def container_warnings(document: SourceDocument, options: FrontendOptions) -> list[str]:
    """What the operator should know that does not stop the patch: containers kept off."""
    root = document.root
    group = None
    if options.group is not None:
        found = _named(root.find("groups"), "group", options.group)
        group = found[-1] if found else None  # None: a group to create, which gets the global value
    use = singularity_use(root, group)
    if use in CONTAINER_USES or (options.group is not None and (use is None or options.containers)):
        return []  # containers on, or the patch turns them on in the group
    where = "the global <attrs>" if options.group is None else f"group {options.group!r}"
    fix = "" if options.group is None else f"; --group-containers sets PREFERRED in group {options.group!r}"
    return [
        f"{document.label}: {where}: {SINGULARITY_USE} is {use or 'not set (DISABLE_GWMS)'}: GlideinWMS then "
        "sets up no Apptainer (no SINGULARITY_PATH for the Triton server) and ignores the jobs' "
        f"+SingularityImage; the groups that run Triton jobs need one of {', '.join(CONTAINER_USES)}{fix}"
    ]


def _exclusion() -> tuple[Fragment, etree._Element, etree._Element]:
    """The template that leaves Triton jobs out of a group: the fragment, its <match> and its <job>."""
    fragment = Fragment.render("frontend_config/exclude_triton_jobs.xml.j2")
    match = fragment.elements[0]
    job = match.find("job")
    if job is None:
        raise PatchError("the template frontend_config/exclude_triton_jobs.xml.j2 has no <job>")
    return fragment, match, job


def counting_groups(root: etree._Element, triton_group: str) -> list[etree._Element]:
    """The enabled groups other than ``triton_group``, and not Triton groups themselves, whose job
    query_expr does not leave Triton jobs out:
    each requests glideins for Triton jobs too (glideins without Triton, where those jobs cannot run)."""
    exclusion = _normalized(_exclusion()[2].get("query_expr", ""))
    triton_job = Fragment.render("frontend_config/match.xml.j2").elements[0].find("job")
    triton = _normalized("" if triton_job is None else triton_job.get("query_expr", ""))
    counting = []
    for group in root.iterfind("groups/group"):
        job = group.find("match/job")
        query = _normalized("" if job is None else job.get("query_expr", ""))
        enabled = group.get("enabled", "True").strip().lower() != "false"
        # Another Triton group (a pool's other role) takes Triton jobs on purpose.
        if group.get("name") != triton_group and enabled and exclusion not in query and triton not in query:
            counting.append(group)
    return counting


def _exclude_triton_jobs(plan: Plan, group: etree._Element) -> None:
    """AND the exclusion of Triton jobs to the group's job query_expr (a <match> or <job> where missing)."""
    fragment, wanted_match, wanted_job = _exclusion()
    match = group.find("match")
    job = None if match is None else match.find("job")
    if match is None:
        plan.insert(group, fragment.text(wanted_match))
    elif job is None:
        plan.insert(match, fragment.text(wanted_job))
    else:
        combine_expression(plan, job, "query_expr", wanted_job.get("query_expr", ""), "&&")


def other_group_warnings(document: SourceDocument, options: FrontendOptions) -> list[str]:
    """The other groups that also request glideins for Triton jobs, when the patch leaves them so."""
    if options.group is None or options.exclude_elsewhere:
        return []
    names = [group.get("name", "") for group in counting_groups(document.root, options.group)]
    if not names:
        return []
    return [
        f"{document.label}: the job query_expr of group(s) {', '.join(map(repr, names))} does not leave out "
        "Triton jobs (+RequiresTriton = True): each of these groups requests glideins for them too, which "
        "start no Triton server, so the jobs do not run there and those glideins idle until they end; "
        "--exclude-triton-jobs adds && (RequiresTriton =!= True) to their query_expr"
    ]


def _patch_pool(plan: Plan, group: etree._Element, where: str, options: FrontendOptions) -> None:
    """The pool role and name in the group's <attrs>; its pool match once the Triton match is in place (the
    same expressions are not edited twice in one pass)."""
    values = {"role": options.pool, "name": options.pool_name}
    attrs = wanted_elements(Fragment.render("frontend_config/pool_attrs.xml.j2", **values))
    ensure_elements(
        plan, group, "attrs", attrs, name_key, MergeContext(where, PARSER_DEFAULTS, options.overwrite)
    )
    if not plan.edits():
        fragment = Fragment.render("frontend_config/pool_match.xml.j2", **values)
        _patch_match(plan, group, fragment, where, options.overwrite)


def plan_edits(document: SourceDocument, options: FrontendOptions) -> list[Edit]:
    """The edits one pass wants (none when the file already has everything)."""
    document.require_root("frontend", "frontend")
    root, label = document.root, document.label
    plan = Plan(document)
    group = None
    if options.group is not None:
        group = _find_group(root, options, label)
        if group is None:
            # Add an empty group; the next pass fills it like an existing one.
            skeleton = render("frontend_config/group.xml.j2", name=options.group)
            groups = root.find("groups")
            if groups is None:
                plan.insert(root, wrap("groups", [skeleton]))
            else:
                plan.insert(groups, skeleton)
            return plan.edits()
        where = f"{label}: group {options.group!r}"
        switch = wanted_elements(Fragment.render("frontend_config/group_attrs.xml.j2"))
        ensure_elements(
            plan, group, "attrs", switch, name_key, MergeContext(where, PARSER_DEFAULTS, options.overwrite)
        )
        _patch_match(plan, group, Fragment.render("frontend_config/match.xml.j2"), where, options.overwrite)
        _patch_containers(
            plan, root, group, MergeContext(where, PARSER_DEFAULTS, options.overwrite), options.containers
        )
        if options.exclude_elsewhere:
            for other in counting_groups(root, options.group):
                _exclude_triton_jobs(plan, other)
        if options.pool:
            _patch_pool(plan, group, where, options)
    if options.server_image:
        holder = root if group is None else group
        where = f"{label}: " + ("global <attrs>" if group is None else f"group {options.group!r}")
        image = wanted_elements(
            Fragment.render("frontend_config/image_attr.xml.j2", image=options.server_image)
        )
        ensure_elements(
            plan, holder, "attrs", image, name_key, MergeContext(where, PARSER_DEFAULTS, options.overwrite)
        )
    if options.images:
        holder, holder_name = _images_target(root, group, label)
        _merge_images(plan, root, holder, f"{label}: {holder_name}", options)
    return plan.edits()


def warnings(options: FrontendOptions) -> list[str]:
    """What the operator should know that does not stop the patch: a remote server image."""
    chosen = [options.server_image, *options.images.values()]
    return [server_images.remote_warning(image) for image in chosen if server_images.is_remote(image)]
