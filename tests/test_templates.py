"""Every template renders, twice the same, to XML that GlideinWMS's parsers accept.

The accepted XML attributes below are copied from the GlideinWMS parsers as test data (the project does
not import GlideinWMS). The factory reads glideinWMS.xml with creation/lib/factoryXmlConfig.py and the
defaults of creation/lib/factory_defaults.xml; creation/lib/cgWParams.py lists the same attributes. The
frontend reads frontend.xml with creation/lib/cvWParams.py, whose ``validate`` rejects any attribute that
is not in its defaults (creation/lib/cWParams.py ``CommonParams.init_support_defaults`` for attr and file;
every ``CommentedOrderedDict`` also accepts ``comment``).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from lxml import etree

from glidein_triton.operator.factory_patch import FactoryOptions, template_values
from glidein_triton.operator.xmlpatch import templates

# creation/lib/cWParams.py attr_defaults + cgWParams.py ("publish", "const") + the element's "name"
FACTORY_ATTR = {
    "name",
    "value",
    "parameter",
    "glidein_publish",
    "job_publish",
    "type",
    "publish",
    "const",
    "comment",
}
# creation/lib/cWParams.py file_defaults (untar_options is a child element)
FACTORY_ENTRY_FILE = {
    "absfname",
    "relfname",
    "const",
    "executable",
    "wrapper",
    "untar",
    "period",
    "prefix",
    "type",
    "time",
    "comment",
}
# creation/lib/cgWParams.py: defaults["files"][3]["after_entry"], global <files> only
FACTORY_GLOBAL_FILE = FACTORY_ENTRY_FILE | {"after_entry"}
# creation/lib/cWParams.py untar_defaults
UNTAR_OPTIONS = {"cond_attr", "dir", "absdir_outattr", "comment"}
# creation/lib/cWParams.py attr_defaults, cvWParams.py attr type; no const/publish in a frontend
FRONTEND_ATTR = {"name", "value", "parameter", "glidein_publish", "job_publish", "type", "comment"}
# creation/lib/cvWParams.py match_defaults, fj_match_defaults, query_attrs_defaults, group_defaults
#: creation/lib/cWParams.py file_defaults plus cvWParams.py's after_entry (no cond_download, no after_group)
FRONTEND_FILE = {
    "absfname", "relfname", "const", "executable", "wrapper", "untar", "period", "prefix", "type", "time",
    "after_entry", "comment",
}  # fmt: skip
FRONTEND = {
    "file": FRONTEND_FILE,
    "match": {"match_expr", "start_expr", "policy_file", "comment"},
    "factory": {"query_expr", "comment"},
    "job": {"query_expr", "comment"},
    "match_attr": {"name", "type", "comment"},
    "group": {"name", "enabled", "comment"},
    "attr": FRONTEND_ATTR,
    "match_attrs": set(),
    "collectors": set(),
    "schedds": set(),
    "security": set(),
    "credentials": set(),
    "attrs": set(),
    "files": set(),
}
FACTORY_ENTRY = {"attr": FACTORY_ATTR, "file": FACTORY_ENTRY_FILE, "untar_options": UNTAR_OPTIONS}
FACTORY_GLOBAL = {"file": FACTORY_GLOBAL_FILE}
#: boolean XML attributes must be exactly True/False (factoryXmlConfig check_boolean, cWParams "Bool")
BOOLEANS = {
    "const",
    "publish",
    "parameter",
    "glidein_publish",
    "job_publish",
    "executable",
    "untar",
    "wrapper",
}
BOOLEANS |= {"after_entry", "enabled"}
#: xmlConfig.py AttrElement (factory attr), cvWParamDict.py translate_match_attrs (match_attr)
TYPES = {"attr": {"string", "int", "expr"}, "match_attr": {"string", "int", "real", "bool"}}

FACTORY_VALUES = template_values(
    FactoryOptions(
        ("ENTRY",),
        settings=(("GLIDEIN_TRITON", "True"), ("GLIDEIN_TRITON_IMAGE", "/cvmfs/x & <y>")),
    )
)
#: template -> (values, accepted attributes per tag)
CASES: dict[str, tuple[Mapping[str, object], Mapping[str, set[str]]]] = {
    "factory_xml/entry_attrs.xml.j2": (FACTORY_VALUES, FACTORY_ENTRY),
    "factory_xml/entry_files.xml.j2": (FACTORY_VALUES, FACTORY_ENTRY),
    "factory_xml/global_files.xml.j2": (FACTORY_VALUES, FACTORY_GLOBAL),
    "factory_xml/snippet.xml.j2": (FACTORY_VALUES, {**FACTORY_ENTRY, "file": FACTORY_GLOBAL_FILE}),
    "frontend_config/group.xml.j2": ({"name": "triton"}, FRONTEND),
    "frontend_config/group_attrs.xml.j2": ({}, FRONTEND),
    "frontend_config/image_attr.xml.j2": ({"image": "/cvmfs/x/tritonserver:1"}, FRONTEND),
    "frontend_config/images_attr.xml.j2": (
        {"images": "default:/cvmfs/el9,tritonserver:docker://x:1"},
        FRONTEND,
    ),
    "frontend_config/match.xml.j2": ({}, FRONTEND),
    "frontend_config/container_attrs.xml.j2": ({}, FRONTEND),
    "frontend_config/wrapper_file.xml.j2": ({"wrapper": "/var/lib/gwms-frontend/web-base/w.sh"}, FRONTEND),
    "frontend_config/exclude_triton_jobs.xml.j2": ({}, FRONTEND),
    "frontend_config/pool_attrs.xml.j2": ({"role": "client", "name": "cms"}, FRONTEND),
    "frontend_config/pool_match.xml.j2": ({"role": "server", "name": "cms"}, FRONTEND),
}


def test_every_template_is_tested() -> None:
    assert templates.template_names() == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_template_renders_the_same_twice_to_accepted_xml(name: str) -> None:
    values, accepted = CASES[name]
    text = templates.render(name, **values)
    assert text == templates.render(name, **values)
    elements = [
        element for element in templates.Fragment(text).document.root.iter() if isinstance(element.tag, str)
    ]
    assert len(elements) > 1
    for element in elements[1:]:
        tag = str(element.tag)
        assert set(element.attrib) <= accepted[tag], (
            f"{name}: <{tag}> {sorted(set(element.attrib) - accepted[tag])}"
        )
        for attribute in BOOLEANS & set(element.attrib):
            assert element.get(attribute) in ("True", "False"), f"{name}: <{tag} {attribute}>"
        if tag in TYPES and "type" in element.attrib:
            assert element.get("type") in TYPES[tag]


@pytest.mark.parametrize("name", ["factory_xml/entry_attrs.xml.j2", "factory_xml/snippet.xml.j2"])
def test_factory_attrs_pass_the_factory_attr_rules(name: str) -> None:
    """factoryXmlConfig.FactAttrElement.validate: published needs const or parameter; else both."""
    root = templates.Fragment.render(name, **FACTORY_VALUES).document.root
    attrs = root.findall("attr")
    assert attrs
    for attr in attrs:
        publish, const, parameter = (attr.get(key) == "True" for key in ("publish", "const", "parameter"))
        assert (const or parameter) if publish else (const and parameter)
        assert parameter, "every setting must reach glidein_config"
        if attr.get("name", "").startswith("GLIDEIN_TRITON"):
            assert attr.get("glidein_publish") == attr.get("job_publish") == "False"


def test_values_are_escaped_for_xml() -> None:
    (_, image) = templates.Fragment.render("factory_xml/entry_attrs.xml.j2", **FACTORY_VALUES).elements[:2]
    assert image.get("value") == "/cvmfs/x & <y>"


def test_the_startup_script_runs_after_the_entry_files() -> None:
    root = templates.Fragment.render("factory_xml/global_files.xml.j2", **FACTORY_VALUES).document.root
    setup, periodic = root.findall("file")
    assert setup.get("after_entry") == periodic.get("after_entry") == "True"
    assert periodic.get("period") == "300"
    assert (
        "after_entry"
        not in etree.tostring(
            templates.Fragment.render("factory_xml/entry_files.xml.j2", **FACTORY_VALUES).document.root
        ).decode()
    )
