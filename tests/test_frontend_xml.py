"""``glidein-triton frontend-xml``: SINGULARITY_IMAGES_DICT merges and a Triton group in a frontend.xml."""

from __future__ import annotations

import re
from pathlib import Path

import classad2
import pytest
from lxml import etree

from glidein_triton.operator import frontend_cli
from glidein_triton.operator.frontend_patch import (
    DEFAULT_SERVER_IMAGE,
    DEFAULT_WRAPPER,
    SINGULARITY_USE,
    FrontendOptions,
    is_grouped,
)
from glidein_triton.operator.xmlpatch.source import PatchError
from glidein_triton.worker.images import images_dict, images_dict_items, images_dict_text

from .support import FRONTEND_XML, added_lines, named, parse, removed_lines

IMAGES = {"tritonserver": DEFAULT_SERVER_IMAGE}
OURS = f"tritonserver:{DEFAULT_SERVER_IMAGE}"
GLOBAL_IMAGES = (
    "default:/cvmfs/singularity.opensciencegrid.org/opensciencegrid/osgvo-el9:latest,"
    "rhel8:docker://hub.example.org/rhel8:8.10"
)
GPU_IMAGES = "cuda:docker://nvcr.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04"
SWITCH = (
    '<attr name="GLIDEIN_TRITON" glidein_publish="False" job_publish="False" parameter="True" type="string" '
    'value="True"/>'
)


def patch(data: bytes, group: str | None = None, **options: object) -> bytes:
    settings = FrontendOptions(group=group, images=options.pop("images", IMAGES), **options)  # type: ignore[arg-type]
    return frontend_cli.patch(data, "frontend.xml", settings).data


def images_of(root: etree._Element, path: str) -> list[str]:
    return [attr.get("value", "") for attr in named(root, path, "SINGULARITY_IMAGES_DICT")]


def group_of(data: bytes, name: str) -> etree._Element:
    (group,) = named(parse(data), "groups/group", name)
    return group


def test_without_a_group_the_global_images_get_the_triton_keys_and_keep_theirs() -> None:
    original = FRONTEND_XML.read_bytes()
    result = patch(original)
    (removed,) = removed_lines(original, result)
    assert removed == f'            value="{GLOBAL_IMAGES}"/>\n'
    assert added_lines(original, result) == [f'            value="{GLOBAL_IMAGES},{OURS}"/>\n']
    root = parse(result)
    assert images_of(root, "attrs/attr") == [f"{GLOBAL_IMAGES},{OURS}"]
    assert images_of(root, "groups/group/attrs/attr") == [GPU_IMAGES]
    assert patch(result) == result


def test_the_images_split_on_the_first_colon_only() -> None:
    assert images_dict_items(f"{GLOBAL_IMAGES}, x : y ,,lone") == [
        ("default", "/cvmfs/singularity.opensciencegrid.org/opensciencegrid/osgvo-el9:latest"),
        ("rhel8", "docker://hub.example.org/rhel8:8.10"),
        ("x", "y"),
        ("lone", ""),
    ]
    assert (
        images_dict_text(images_dict_items("a:/x, lone ,b:docker://h:5000/i"))
        == "a:/x,lone,b:docker://h:5000/i"
    )
    assert images_dict(f"{GLOBAL_IMAGES},lone,rhel8:/other") == {
        "default": "/cvmfs/singularity.opensciencegrid.org/opensciencegrid/osgvo-el9:latest",
        "rhel8": "/other",
    }


def test_a_group_without_images_gets_the_match_expressions_and_the_switch() -> None:
    original = FRONTEND_XML.read_bytes()
    result = patch(original, "main")
    assert removed_lines(original, result) == [
        '         <match match_expr="True" start_expr="True">\n',
        '            <factory query_expr="True">\n',
        '            <job query_expr="True">\n',
    ]
    added = added_lines(original, result)
    assert "                  " + '<match_attr name="GLIDEIN_TRITON_ENTRY_GPUS" type="string"/>\n' in added
    assert "                  " + '<match_attr name="RequiresTriton" type="bool"/>\n' in added
    assert "            " + SWITCH + "\n" in added
    group = group_of(result, "main")
    match = group.find("match")
    assert match is not None
    assert match.get("start_expr") == "(TARGET.RequiresTriton =!= True) || (MY.HasTriton =?= True)"
    assert match.find("factory").get("query_expr") == "(GlideinParamGLIDEIN_TRITON =!= UNDEFINED)"  # type: ignore[union-attr]
    assert match.find("job").get("query_expr") == "(RequiresTriton =?= True)"  # type: ignore[union-attr]
    # The group's own value replaces the global one: it keeps the VO's images (and their default key).
    assert images_of(parse(result), "attrs/attr") == [GLOBAL_IMAGES]
    (images,) = named(group, "attrs/attr", "SINGULARITY_IMAGES_DICT")
    assert dict(images.attrib) == {
        "name": "SINGULARITY_IMAGES_DICT",
        "glidein_publish": "False",
        "job_publish": "False",
        "parameter": "False",
        "type": "string",
        "value": f"{GLOBAL_IMAGES},{OURS}",
    }
    assert patch(result, "main") == result


def test_a_group_with_its_own_images_gets_the_keys_there_and_its_expressions_anded() -> None:
    original = FRONTEND_XML.read_bytes()
    result = patch(original, "gpu")
    root = parse(result)
    assert images_of(root, "attrs/attr") == [GLOBAL_IMAGES]
    assert images_of(root, "groups/group/attrs/attr") == [f"{GPU_IMAGES},{OURS}"]
    match = group_of(result, "gpu").find("match")
    assert match is not None
    assert match.get("match_expr") == (
        '(job.get("RequestGPUs", 0) >= 1) and ((not job.get("RequiresTritonGPU")) or '
        '(str(glidein["attrs"].get("GLIDEIN_TRITON_ENTRY_GPUS", "")).lower() == "true"))'
    )
    assert match.get("start_expr") == (
        "(TARGET.RequestGPUs >= 1) && ((TARGET.RequiresTriton =!= True) || (MY.HasTriton =?= True))"
    )
    # The operator's multi-line expression is kept as written, inside the new parentheses.
    assert (
        b"<factory query_expr='((GLIDEIN_Resource_Slots =!= UNDEFINED)\n"
        b'                                 &amp;&amp; stringListMember("GPUs", GLIDEIN_Resource_Slots)) '
        b"&amp;&amp; (GlideinParamGLIDEIN_TRITON =!= UNDEFINED)'>" in result
    )
    assert match.find("job").get("query_expr") == "(RequestGPUs >= 1) && (RequiresTriton =?= True)"  # type: ignore[union-attr]
    assert [attr.get("name") for attr in match.iterfind("job/match_attrs/match_attr")] == [
        "RequestGPUs",
        "RequiresTriton",
        "RequiresTritonGPU",
    ]
    assert patch(result, "gpu") == result


def test_a_new_group_is_created_when_asked_and_filled() -> None:
    original = FRONTEND_XML.read_bytes()
    with pytest.raises(
        PatchError, match=re.escape("no group called 'triton' (groups: main, gpu); pass --create-group")
    ):
        patch(original, "triton")
    result = patch(original, "triton", create_group=True)
    assert removed_lines(original, result) == []
    group = group_of(result, "triton")
    assert group.get("enabled") == "True"
    assert [attr.get("name") for attr in group.iterfind("attrs/attr")] == [
        "GLIDEIN_TRITON",
        SINGULARITY_USE,
        "SINGULARITY_IMAGES_DICT",
    ]
    assert images_of(group, "attrs/attr") == [f"{GLOBAL_IMAGES},{OURS}"]
    assert group.find("match/factory").get("query_expr") == "(GlideinParamGLIDEIN_TRITON =!= UNDEFINED)"  # type: ignore[union-attr]
    assert patch(result, "triton", create_group=True) == result


def test_a_frontend_without_groups_or_attrs_gets_both() -> None:
    original = b'<frontend frontend_name="fe">\n   <collectors/>\n</frontend>\n'
    result = patch(original, "triton", create_group=True, images={}, server_image=DEFAULT_SERVER_IMAGE)
    root = parse(result)
    assert [attr.get("name") for attr in root.iterfind("groups/group/attrs/attr")] == [
        "GLIDEIN_TRITON",
        SINGULARITY_USE,
        "GLIDEIN_TRITON_IMAGE",
    ]
    assert root.find("attrs") is None
    assert result.startswith(
        b'<frontend frontend_name="fe">\n   <collectors/>\n   <groups>\n      <group name="triton"'
    )
    assert patch(result, "triton", create_group=True, images={}, server_image=DEFAULT_SERVER_IMAGE) == result


def test_no_images_dict_is_created_from_nothing() -> None:
    """A new value would replace the factory entry's, whose default image singularity_setup.sh needs."""
    original = b'<frontend frontend_name="fe">\n   <collectors/>\n</frontend>\n'
    with pytest.raises(
        PatchError, match=r"no SINGULARITY_IMAGES_DICT to add the tritonserver key to, and a new one"
    ):
        patch(original)
    created = patch(original, "triton", create_group=True, images={})
    with pytest.raises(PatchError, match=r"use GLIDEIN_TRITON_IMAGE \(leave out --images-dict\)"):
        patch(created, "triton")


def test_the_server_image_goes_into_glidein_triton_image() -> None:
    original = FRONTEND_XML.read_bytes()
    result = patch(original, "main", images={}, server_image=DEFAULT_SERVER_IMAGE)
    image = (
        '<attr name="GLIDEIN_TRITON_IMAGE" glidein_publish="False" job_publish="False" parameter="True" '
        f'type="string" value="{DEFAULT_SERVER_IMAGE}"/>'
    )
    assert "            " + image + "\n" in added_lines(original, result)
    assert images_of(parse(result), "attrs/attr") == [GLOBAL_IMAGES]
    assert images_of(parse(result), "groups/group/attrs/attr") == [GPU_IMAGES]
    assert patch(result, "main", images={}, server_image=DEFAULT_SERVER_IMAGE) == result
    with pytest.raises(PatchError, match=r"'GLIDEIN_TRITON_IMAGE' is already there"):
        patch(result, "main", images={}, server_image="/cvmfs/other:1")
    without_group = patch(original, images={}, server_image=DEFAULT_SERVER_IMAGE)
    assert "      " + image + "\n" in added_lines(original, without_group)


def with_global_images(value: str) -> bytes:
    return FRONTEND_XML.read_bytes().replace(GLOBAL_IMAGES.encode(), value.encode())


def test_a_different_image_for_our_key_is_a_conflict_unless_overwritten() -> None:
    original = with_global_images(f"tritonserver:docker://example.org/triton:23.10,{GLOBAL_IMAGES}")
    with pytest.raises(PatchError) as raised:
        patch(original)
    assert "global <attrs>: SINGULARITY_IMAGES_DICT already has other images" in str(raised.value)
    assert "tritonserver is 'docker://example.org/triton:23.10'" in str(raised.value)
    result = patch(original, overwrite=True)
    assert images_of(parse(result), "attrs/attr") == [f"tritonserver:{DEFAULT_SERVER_IMAGE},{GLOBAL_IMAGES}"]


def test_our_keys_already_there_change_nothing() -> None:
    original = with_global_images(f"{GLOBAL_IMAGES},{OURS}")
    assert patch(original) == original


def test_a_duplicated_images_attr_is_refused() -> None:
    original = FRONTEND_XML.read_bytes().replace(
        b'      <attr name="USE_MATCH_AUTH"',
        b'      <attr name="SINGULARITY_IMAGES_DICT" value="a:b"/>\n      <attr name="USE_MATCH_AUTH"',
    )
    with pytest.raises(PatchError, match="SINGULARITY_IMAGES_DICT is set 2 times"):
        patch(original)


def test_the_switch_set_otherwise_in_the_group_is_a_conflict() -> None:
    original = FRONTEND_XML.read_bytes().replace(
        b"         <attrs>\n         </attrs>",
        b'         <attrs>\n            <attr name="GLIDEIN_TRITON" value="False"/>\n         </attrs>',
    )
    with pytest.raises(
        PatchError, match=r"group 'main': <attr> 'GLIDEIN_TRITON' is already there: value='False'"
    ):
        patch(original, "main")
    result = patch(original, "main", overwrite=True)
    assert b'            <attr name="GLIDEIN_TRITON" value="True"/>\n' in result


def test_a_match_attr_of_another_type_is_a_conflict() -> None:
    original = FRONTEND_XML.read_bytes().replace(
        b'<match_attr name="RequestGPUs" type="int"/>',
        b'<match_attr name="RequestGPUs" type="int"/><match_attr name="RequiresTritonGPU" type="string"/>',
    )
    with pytest.raises(
        PatchError, match=r"<job> match_attrs: <match_attr> 'RequiresTritonGPU' is already there"
    ):
        patch(original, "gpu")


@pytest.mark.parametrize(
    ("data", "group", "message"),
    [
        (b"<glidein/>", None, "not <frontend>"),
        (b"<frontend><groups></frontend>", None, "not well-formed"),
        (FRONTEND_XML.read_bytes(), "bad.name", "cannot be a group name"),
        (FRONTEND_XML.read_bytes(), "XPVO_x", "cannot be a group name"),
    ],
)
def test_bad_input_is_a_clear_error(data: bytes, group: str | None, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        patch(data, group, create_group=group is not None)


def test_the_expressions_select_what_they_should() -> None:
    match = group_of(patch(FRONTEND_XML.read_bytes(), "main"), "main").find("match")
    assert match is not None
    factory_query = classad2.ExprTree(match.find("factory").get("query_expr"))  # type: ignore[union-attr]
    assert factory_query.eval(classad2.ClassAd({"GlideinParamGLIDEIN_TRITON": "False"})) is True
    assert factory_query.eval(classad2.ClassAd({"GLIDEIN_Site": "X"})) is False
    job_query = classad2.ExprTree(match.find("job").get("query_expr"))  # type: ignore[union-attr]
    assert job_query.eval(classad2.ClassAd({"RequiresTriton": True})) is True
    assert job_query.eval(classad2.ClassAd({"RequestGPUs": 1})) is False
    start = classad2.ExprTree(match.get("start_expr"))
    triton_job, plain_job = classad2.ClassAd({"RequiresTriton": True}), classad2.ClassAd({})
    assert start.eval(classad2.ClassAd({"HasTriton": True}), triton_job) is True
    assert start.eval(classad2.ClassAd({"HasTriton": False}), triton_job) is False
    assert start.eval(classad2.ClassAd({"HasTriton": False}), plain_job) is True
    # match_expr is Python, evaluated by the frontend with the job and the entry's glidein dictionaries
    code = compile(match.get("match_expr", ""), "<match_expr>", "eval")

    def matches(job: dict[str, object], attrs: dict[str, str]) -> bool:
        return bool(eval(code, {"job": job, "glidein": {"attrs": attrs}}))  # noqa: S307 (our own template's expression)

    gpu_entry = {"GLIDEIN_TRITON_ENTRY_GPUS": "True", "GLIDEIN_Resource_Slots": "GPUs,1,type=main"}
    assert matches({"RequiresTriton": True}, {})
    assert matches({"RequiresTriton": True, "RequiresTritonGPU": True}, gpu_entry)
    assert not matches({"RequiresTritonGPU": True}, {"GLIDEIN_TRITON_ENTRY_GPUS": "False"})
    # Not a substring of GLIDEIN_Resource_Slots: only the entry attribute says the entry gives GPUs.
    assert not matches({"RequiresTritonGPU": True}, {"GLIDEIN_Resource_Slots": "GPUs,1,type=main"})


@pytest.mark.parametrize(
    ("expression", "grouped"),
    [("(a)", True), ("(a) || (b)", False), ("((a) || (b))", True), ("a", False), ('(")" == x)', True)],
)
def test_grouped_expressions_are_recognised(expression: str, grouped: bool) -> None:
    assert is_grouped(expression) is grouped


def test_the_command_prints_a_diff_and_in_place_writes_a_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "frontend.xml"
    target.write_bytes(FRONTEND_XML.read_bytes())
    assert frontend_cli.main(["--group", "main", str(target)]) == 1
    out = capsys.readouterr().out
    relative = str(target).lstrip("/")
    assert out.startswith(f"--- a/{relative}\n+++ b/{relative}\n")
    assert f"+            {SWITCH}\n" in out
    assert target.read_bytes() == FRONTEND_XML.read_bytes()
    assert frontend_cli.main(["--group", "main", "--in-place", str(target)]) == 0
    assert (tmp_path / "frontend.xml.bak").read_bytes() == FRONTEND_XML.read_bytes()
    assert target.read_bytes() == patch(
        FRONTEND_XML.read_bytes(), "main", images={}, server_image=DEFAULT_SERVER_IMAGE
    )
    assert frontend_cli.main(["--group", "main", "--in-place", str(target)]) == 0
    assert "nothing to change" in capsys.readouterr().err


def test_a_missing_group_leaves_the_file_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "frontend.xml"
    target.write_bytes(FRONTEND_XML.read_bytes())
    assert frontend_cli.main(["--group", "nope", "--in-place", str(target)]) == 3
    assert "no group called 'nope'" in capsys.readouterr().err
    assert target.read_bytes() == FRONTEND_XML.read_bytes()
    assert [path.name for path in tmp_path.iterdir()] == ["frontend.xml"]


def test_images_given_on_the_command_line_are_used(capsys: pytest.CaptureFixture[str]) -> None:
    assert frontend_cli.main(["--server-image", "/cvmfs/a/server:1", str(FRONTEND_XML)]) == 1
    captured = capsys.readouterr()
    assert 'name="GLIDEIN_TRITON_IMAGE"' in captured.out
    assert 'value="/cvmfs/a/server:1"/>' in captured.out
    assert "remote image" not in captured.err
    assert frontend_cli.main(["--server-image", "/cvmfs/a/server:1", "--images-dict", str(FRONTEND_XML)]) == 1
    assert (
        f'+            value="{GLOBAL_IMAGES},tritonserver:/cvmfs/a/server:1"/>\n' in capsys.readouterr().out
    )


def test_a_remote_server_image_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    image = "docker://nvcr.io/nvidia/tritonserver:24.08-py3"
    assert frontend_cli.main(["--server-image", image, str(FRONTEND_XML)]) == 1
    assert (
        f"glidein-triton: warning: {image} is a remote image: every glidein downloads and converts it"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--create-group"], "--create-group needs --group"),
        (["--no-images"], "nothing to do"),
        (["--server-image", "a,b"], "without commas"),
        (["--server-image", " "], "without commas"),
    ],
)
def test_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        frontend_cli.main([*arguments, str(FRONTEND_XML)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_a_trailing_comma_in_the_images_is_not_doubled() -> None:
    original = with_global_images(f"{GLOBAL_IMAGES},")
    assert images_of(parse(patch(original)), "attrs/attr") == [f"{GLOBAL_IMAGES},{OURS}"]
    empty = with_global_images("")
    assert images_of(parse(patch(empty)), "attrs/attr") == [OURS]


def test_a_bare_group_gets_the_whole_match_and_attrs() -> None:
    original = b"<frontend>\n  <groups>\n    <group name='bare' enabled='True'/>\n  </groups>\n</frontend>\n"
    result = patch(original, "bare", images={})
    group = group_of(result, "bare")
    match = group.find("match")
    assert match is not None
    assert match.find("factory").get("query_expr") == "(GlideinParamGLIDEIN_TRITON =!= UNDEFINED)"  # type: ignore[union-attr]
    assert [attr.get("name") for attr in match.iterfind("job/match_attrs/match_attr")] == [
        "RequiresTriton",
        "RequiresTritonGPU",
    ]
    assert [attr.get("name") for attr in group.iterfind("attrs/attr")] == ["GLIDEIN_TRITON", SINGULARITY_USE]
    assert result.startswith(b"<frontend>\n  <groups>\n    <group name='bare' enabled='True'>\n      <")
    assert patch(result, "bare", images={}) == result


def test_a_match_without_factory_or_job_gets_them() -> None:
    original = b'<frontend><groups><group name="g"><match match_expr="True"/></group></groups></frontend>'
    result = patch(original, "g", images={})
    match = group_of(result, "g").find("match")
    assert match is not None
    assert match.find("factory/match_attrs/match_attr").get("name") == "GLIDEIN_TRITON_ENTRY_GPUS"  # type: ignore[union-attr]
    assert match.find("job").get("query_expr") == "(RequiresTriton =?= True)"  # type: ignore[union-attr]
    assert patch(result, "g", images={}) == result


def container_settings(result: bytes, group: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The group's GLIDEIN_Singularity_Use values and its <file> (absfname, wrapper) pairs."""
    element = group_of(result, group)
    uses = [attr.get("value", "") for attr in named(element, "attrs/attr", SINGULARITY_USE)]
    files = [(file.get("absfname", ""), file.get("wrapper", "")) for file in element.iterfind("files/file")]
    return uses, files


def test_a_group_without_container_settings_gets_preferred_and_the_job_wrapper() -> None:
    result = patch(FRONTEND_XML.read_bytes(), "main")
    assert container_settings(result, "main") == (["PREFERRED"], [(DEFAULT_WRAPPER, "True")])
    (attr,) = named(group_of(result, "main"), "attrs/attr", SINGULARITY_USE)
    # as GlideinWMS's frontend documentation writes it
    assert dict(attr.attrib) == {
        "name": SINGULARITY_USE,
        "glidein_publish": "True",
        "job_publish": "True",
        "parameter": "False",
        "type": "string",
        "value": "PREFERRED",
    }
    assert patch(result, "main") == result


def with_container_settings(group_attr: str = "", global_attr: str = "", global_file: str = "") -> bytes:
    """The fixture with GLIDEIN_Singularity_Use in group 'main' and/or the global <attrs>, and a global file."""
    text = FRONTEND_XML.read_text(encoding="utf-8")
    if global_attr:
        text = text.replace("   <attrs>\n", f"   <attrs>\n      {global_attr}\n", 1)
    if global_file:
        text = text.replace(
            "   <groups>\n", f"   <files>\n      {global_file}\n   </files>\n   <groups>\n", 1
        )
    if group_attr:
        head, _, tail = text.partition('<group name="main" enabled="True">')
        tail = tail.replace("<attrs>\n", f"<attrs>\n            {group_attr}\n", 1)
        text = f'{head}<group name="main" enabled="True">{tail}'
    return text.encode()


def use_attr(value: str) -> str:
    return f'<attr name="GLIDEIN_Singularity_Use" parameter="False" type="string" value="{value}"/>'


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (with_container_settings(group_attr=use_attr("REQUIRED")), ["REQUIRED"]),
        (with_container_settings(global_attr=use_attr("OPTIONAL")), []),
        # the group's value wins over the global one, as in the frontend
        (with_container_settings(use_attr("NEVER"), use_attr("PREFERRED")), ["NEVER"]),
    ],
)
def test_a_container_setting_already_there_is_left_alone(original: bytes, expected: list[str]) -> None:
    result = patch(original, "main")
    uses, files = container_settings(result, "main")
    assert uses == expected
    assert files == []


def test_a_wrapper_in_the_global_files_is_enough() -> None:
    wrapper = '<file absfname="/var/lib/gwms-frontend/web-base/frontend/my_wrapper.sh" wrapper="True"/>'
    result = patch(with_container_settings(global_file=wrapper), "main")
    assert container_settings(result, "main") == (["PREFERRED"], [])


@pytest.mark.parametrize(
    ("original", "group", "message"),
    [
        (
            with_container_settings(group_attr=use_attr("NEVER")),
            "main",
            "group 'main': GLIDEIN_Singularity_Use is NEVER",
        ),
        (
            with_container_settings(global_attr=use_attr("DISABLE_GWMS")),
            None,
            "the global <attrs>: GLIDEIN_Singularity_Use is DISABLE_GWMS",
        ),
        (FRONTEND_XML.read_bytes(), None, "GLIDEIN_Singularity_Use is not set (DISABLE_GWMS)"),
        # a new group takes the global value
        (
            with_container_settings(global_attr=use_attr("NEVER")),
            "new",
            "group 'new': GLIDEIN_Singularity_Use is NEVER",
        ),
    ],
)
def test_containers_kept_off_are_warned_about(original: bytes, group: str | None, message: str) -> None:
    options = FrontendOptions(group=group, create_group=True, images=IMAGES)
    notes = [
        note
        for note in frontend_cli.patch(original, "frontend.xml", options).warnings
        if SINGULARITY_USE in note
    ]
    assert len(notes) == 1
    assert message in notes[0]
    assert "no SINGULARITY_PATH for the Triton server" in notes[0]


@pytest.mark.parametrize(
    "original",
    [
        with_container_settings(global_attr=use_attr("PREFERRED")),
        with_container_settings(group_attr=use_attr("REQUIRED")),
        FRONTEND_XML.read_bytes(),  # the patch sets it in the group
    ],
)
def test_a_group_with_containers_is_not_warned_about(original: bytes) -> None:
    options = FrontendOptions(group="main", images=IMAGES, exclude_elsewhere=True)
    assert frontend_cli.patch(original, "frontend.xml", options).warnings == []


def test_containers_off_globally_the_group_gets_its_own_preferred() -> None:
    original = with_container_settings(global_attr=use_attr("DISABLE_GWMS"))
    without = frontend_cli.patch(original, "frontend.xml", FrontendOptions(group="main", images=IMAGES))
    assert container_settings(without.data, "main") == ([], [])
    assert any("--group-containers sets PREFERRED in group 'main'" in note for note in without.warnings)
    options = FrontendOptions(group="main", images=IMAGES, containers=True)
    result = frontend_cli.patch(original, "frontend.xml", options)
    assert container_settings(result.data, "main") == (["PREFERRED"], [(DEFAULT_WRAPPER, "True")])
    assert not any(SINGULARITY_USE in note for note in result.warnings)
    (global_use,) = named(parse(result.data), "attrs/attr", SINGULARITY_USE)
    assert global_use.get("value") == "DISABLE_GWMS"  # the other groups keep theirs
    assert frontend_cli.patch(result.data, "frontend.xml", options).data == result.data


def test_a_groups_own_value_that_keeps_containers_off_is_replaced_only_with_overwrite() -> None:
    original = with_container_settings(group_attr=use_attr("NEVER"))
    with pytest.raises(PatchError, match="Pass --overwrite to replace it"):
        patch(original, "main", containers=True)
    replaced = patch(original, "main", containers=True, overwrite=True)
    assert container_settings(replaced, "main")[0] == ["PREFERRED"]


def query_of(data: bytes, group: str) -> str:
    job = group_of(data, group).find("match/job")
    assert job is not None
    return job.get("query_expr", "")


def test_other_groups_counting_triton_jobs_are_named_and_can_leave_them_out() -> None:
    original = FRONTEND_XML.read_bytes()
    plain = frontend_cli.patch(original, "frontend.xml", FrontendOptions(group="triton", create_group=True))
    (note,) = [note for note in plain.warnings if "query_expr" in note]
    assert "group(s) 'main', 'gpu' does not leave out Triton jobs" in note
    assert "--exclude-triton-jobs" in note
    options = FrontendOptions(group="triton", create_group=True, exclude_elsewhere=True)
    result = frontend_cli.patch(original, "frontend.xml", options)
    assert not any("query_expr" in note for note in result.warnings)
    assert query_of(result.data, "main") == "(RequiresTriton =!= True)"
    assert query_of(result.data, "gpu") == "(RequestGPUs >= 1) && (RequiresTriton =!= True)"
    assert query_of(result.data, "triton") == "(RequiresTriton =?= True)"
    assert frontend_cli.patch(result.data, "frontend.xml", options).data == result.data
    # What the expressions select, as HTCondor evaluates a constraint on a job ad.
    triton_job = classad2.ClassAd({"RequiresTriton": True, "RequestGPUs": 1})
    other_job = classad2.ClassAd({"RequestGPUs": 1})
    gpu_query = classad2.ExprTree(query_of(result.data, "gpu"))
    assert gpu_query.eval(triton_job) is False
    assert gpu_query.eval(other_job) is True


def test_a_group_without_a_job_query_gets_one_that_leaves_triton_jobs_out() -> None:
    text = FRONTEND_XML.read_text(encoding="utf-8")
    head, _, tail = text.partition('<group name="main" enabled="True">')
    start, end = tail.index("<match "), tail.index("</match>") + len("</match>")
    original = f'{head}<group name="main" enabled="True">{tail[:start]}{tail[end:]}'.encode()
    result = patch(original, "triton", create_group=True, exclude_elsewhere=True)
    assert query_of(result, "main") == "(RequiresTriton =!= True)"
    disabled = FRONTEND_XML.read_bytes().replace(
        b'<group name="gpu" enabled="True"', b'<group name="gpu" enabled="False"'
    )
    notes = frontend_cli.patch(disabled, "frontend.xml", FrontendOptions(group="main")).warnings
    assert not any("query_expr" in note for note in notes)


def test_the_group_options_need_a_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        frontend_cli.main(["--exclude-triton-jobs", str(FRONTEND_XML)])
    assert "--exclude-triton-jobs needs --group NAME" in capsys.readouterr().err


def pool_groups() -> bytes:
    """The fixture with a pool client group and a pool server group of pool "cms", both created."""
    data = patch(FRONTEND_XML.read_bytes(), "pool_clients", create_group=True, pool="client", pool_name="cms")
    return patch(data, "pool_servers", create_group=True, pool="server", pool_name="cms")


def test_a_pool_group_gets_the_role_and_name_and_a_second_run_changes_nothing() -> None:
    original = FRONTEND_XML.read_bytes()
    data = pool_groups()
    assert removed_lines(original, data) == []
    for name, role in (("pool_clients", "client"), ("pool_servers", "server")):
        attrs = {attr.get("name"): attr for attr in group_of(data, name).iterfind("attrs/attr")}
        assert attrs["GLIDEIN_TRITON_POOL"].get("value") == role
        assert attrs["GLIDEIN_TRITON_POOL_NAME"].get("value") == "cms"
        assert attrs["GLIDEIN_TRITON_POOL"].get("parameter") == "True"
        assert attrs["GLIDEIN_TRITON"].get("value") == "True"
    again = patch(data, "pool_clients", create_group=True, pool="client", pool_name="cms")
    assert patch(again, "pool_servers", pool="server", pool_name="cms") == data


def test_the_pool_expressions_steer_jobs_to_their_role() -> None:
    data = pool_groups()
    client_match = group_of(data, "pool_clients").find("match")
    server_match = group_of(data, "pool_servers").find("match")
    assert client_match is not None
    assert server_match is not None
    pool_job = classad2.ClassAd({"RequiresTriton": True, "RequiresTritonPool": True})
    lease_job = classad2.ClassAd({"RequiresTriton": True, "RequiresTritonPoolServer": True})

    def glidein(role: str, name: str = "cms") -> classad2.ClassAd:
        return classad2.ClassAd({"HasTriton": True, "TritonPoolRole": role, "TritonPoolName": name})

    client_start = classad2.ExprTree(client_match.get("start_expr"))
    assert client_start.eval(glidein("client"), pool_job) is True
    assert client_start.eval(glidein("server"), pool_job) is False
    assert client_start.eval(glidein("client", "other"), pool_job) is False
    assert client_start.eval(classad2.ClassAd({"HasTriton": True}), pool_job) is False
    server_start = classad2.ExprTree(server_match.get("start_expr"))
    assert server_start.eval(glidein("server"), lease_job) is True
    assert server_start.eval(glidein("client"), lease_job) is False
    client_jobs = classad2.ExprTree(client_match.find("job").get("query_expr"))  # type: ignore[union-attr]
    assert client_jobs.eval(pool_job) is True
    assert client_jobs.eval(classad2.ClassAd({"RequiresTriton": True})) is False
    server_jobs = classad2.ExprTree(server_match.find("job").get("query_expr"))  # type: ignore[union-attr]
    assert server_jobs.eval(lease_job) is True
    assert server_jobs.eval(pool_job) is False
    entries = classad2.ExprTree(server_match.find("factory").get("query_expr"))  # type: ignore[union-attr]
    server_entry = {"GlideinParamGLIDEIN_TRITON": "True", "GlideinParamGLIDEIN_TRITON_POOL": "server"}
    assert entries.eval(classad2.ClassAd(server_entry)) is True
    assert entries.eval(classad2.ClassAd({"GlideinParamGLIDEIN_TRITON": "True"})) is False
    client_entries = classad2.ExprTree(client_match.find("factory").get("query_expr"))  # type: ignore[union-attr]
    assert client_entries.eval(classad2.ClassAd(server_entry)) is False
    assert client_entries.eval(classad2.ClassAd({"GlideinParamGLIDEIN_TRITON": "True"})) is True


def test_excluding_triton_jobs_elsewhere_leaves_the_other_pool_group_alone() -> None:
    data = pool_groups()
    result = patch(data, "pool_clients", pool="client", pool_name="cms", exclude_elsewhere=True)
    server_jobs = group_of(result, "pool_servers").find("match/job")
    assert server_jobs is not None
    assert "RequiresTriton =!= True" not in server_jobs.get("query_expr", "")
    main_jobs = group_of(result, "main").find("match/job")
    assert main_jobs is not None
    assert "(RequiresTriton =!= True)" in main_jobs.get("query_expr", "")


def test_a_group_with_another_pool_role_is_a_conflict() -> None:
    with pytest.raises(PatchError, match="'GLIDEIN_TRITON_POOL' is already there: value='client'"):
        patch(pool_groups(), "pool_clients", pool="server", pool_name="cms")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--pool", "client"], "--pool needs --group NAME"),
        (["--group", "g", "--pool-name", "cms"], "--pool-name needs --pool server or --pool client"),
        (["--group", "g", "--pool", "client", "--pool-name", "a b"], "'a b' is not a pool name"),
        (["--group", "g", "--pool", "off"], "invalid choice: 'off'"),
    ],
)
def test_bad_pool_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        frontend_cli.main([*arguments, str(FRONTEND_XML)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
