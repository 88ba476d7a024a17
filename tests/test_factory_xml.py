"""``glidein-triton factory-xml``: entries of a realistic glideinWMS.xml and config.d file, patched in place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glidein_triton.operator import factory_cli
from glidein_triton.operator.factory_patch import FactoryOptions, has_gpus
from glidein_triton.operator.xmlpatch.command import write_in_place
from glidein_triton.operator.xmlpatch.source import PatchError

from .support import CONFIG_D_XML, FACTORY_XML, added_lines, named, parse, removed_lines, values

PAYLOAD = "/var/lib/gwms-factory/glidein-triton"
TRITON_ATTR = (
    '<attr name="GLIDEIN_TRITON" const="False" glidein_publish="False" job_publish="False" parameter="True" '
    'publish="True" type="string" value="True"/>'
)
ENTRY_GPUS_ATTR = (
    '<attr name="GLIDEIN_TRITON_ENTRY_GPUS" const="True" glidein_publish="False" job_publish="False" '
    'parameter="True" publish="True" type="string" value="True"/>'
)
SLOTS_ATTR = (
    '<attr name="GLIDEIN_Resource_Slots" const="True" glidein_publish="True" job_publish="False" '
    'parameter="True" publish="True" type="string" value="GPUs,type=main"/>'
)
TARBALL_FILE = [
    f'<file absfname="{PAYLOAD}/glidein_triton_worker.tgz" const="True" executable="False" untar="True">',
    '   <untar_options absdir_outattr="GLIDEIN_TRITON_DIR" dir="triton_code"/>',
    "</file>",
]
GLOBAL_FILES = [
    f'<file absfname="{PAYLOAD}/glidein_triton_setup.sh" after_entry="True" const="True" executable="True"/>',
    f'<file absfname="{PAYLOAD}/glidein_triton_periodic.sh" after_entry="True" const="True" executable="True" '
    'period="300" prefix="NOPREFIX"/>',
]


def patch(data: bytes, *entries: str, label: str = "glideinWMS.xml", **options: object) -> bytes:
    return factory_cli.patch(data, label, FactoryOptions(entries=entries, **options)).data  # type: ignore[arg-type]


def indented(indent: str, lines: list[str]) -> list[str]:
    return [indent + line + "\n" for line in lines]


def entry(root_data: bytes, name: str) -> object:
    (found,) = named(parse(root_data), "entries/entry", name)
    return found


def test_an_entry_gets_the_worker_code_the_switch_and_gpus_and_the_factory_gets_the_scripts() -> None:
    original = FACTORY_XML.read_bytes()
    result = patch(original, "CE_GPU_A100")
    assert removed_lines(original, result) == []  # only insertions: the rest is byte-identical
    assert added_lines(original, result) == [
        *indented(" " * 12, [TRITON_ATTR, ENTRY_GPUS_ATTR, SLOTS_ATTR]),
        *indented(" " * 12, TARBALL_FILE),
        *indented(" " * 6, GLOBAL_FILES),
    ]
    root = parse(result)
    (gpu_entry,) = named(root, "entries/entry", "CE_GPU_A100")
    assert [attr.get("name") for attr in gpu_entry.iterfind("attrs/attr")][-3:] == [
        "GLIDEIN_TRITON",
        "GLIDEIN_TRITON_ENTRY_GPUS",
        "GLIDEIN_Resource_Slots",
    ]
    (untar,) = gpu_entry.iterfind("files/file/untar_options")
    assert values(untar) == {"absdir_outattr": "GLIDEIN_TRITON_DIR", "dir": "triton_code"}
    scripts = root.findall("files/file")[1:]
    assert [values(script)["after_entry"] for script in scripts] == ["True", "True"]
    (cpu_entry,) = named(root, "entries/entry", "CE_CPU_ONLY")
    assert cpu_entry.find("attrs") is None


def test_a_second_run_changes_nothing() -> None:
    original = FACTORY_XML.read_bytes()
    once = patch(original, "CE_GPU_A100", "CE_CPU_ONLY", "GPU_METASITE", period=60)
    assert once != original
    assert patch(once, "CE_GPU_A100", "CE_CPU_ONLY", "GPU_METASITE", period=60) == once
    assert patch(once, "GPU_METASITE", period=60) == once


def test_a_self_closing_files_and_missing_attrs_are_created_in_the_entry() -> None:
    original = FACTORY_XML.read_bytes()
    result = patch(original, "CE_CPU_ONLY", global_files=False, gpu_slots="")
    assert removed_lines(original, result) == ["         <files/>\n"]
    assert added_lines(original, result) == [
        "         <files>\n",
        *indented(" " * 12, TARBALL_FILE),
        "         </files>\n",
        "         <attrs>\n",
        *indented(" " * 12, [TRITON_ATTR]),
        "         </attrs>\n",
    ]


def test_an_entry_set_is_patched_by_alias_and_keeps_its_resource_slots() -> None:
    original = FACTORY_XML.read_bytes()
    result = patch(original, "GPU_METASITE", global_files=False)
    (removed,) = removed_lines(original, result)
    assert 'value="ioslot,2,200,static"' in removed
    assert removed.replace('value="ioslot,2,200,static"', 'value="ioslot,2,200,static;GPUs,type=main"') in (
        added_lines(original, result)
    )
    (metasite,) = parse(result).iterfind("entry_sets/entry_set")
    assert [attr.get("name") for attr in metasite.iterfind("attrs/attr")] == [
        "GLIDEIN_Resource_Slots",
        "GLIDEIN_Site",
        "GLIDEIN_TRITON",
        "GLIDEIN_TRITON_ENTRY_GPUS",
    ]
    assert metasite.find("files/file").get("untar") == "True"  # type: ignore[union-attr]


def test_an_entry_of_an_entry_set_must_be_named_by_the_set_alias() -> None:
    with pytest.raises(PatchError, match=r"part of entry_set 'GPU_METASITE'.*use --entry GPU_METASITE"):
        patch(FACTORY_XML.read_bytes(), "METASITE_GW2")


def test_a_commented_out_entry_is_not_found_and_stays_commented() -> None:
    original = FACTORY_XML.read_bytes()
    with pytest.raises(
        PatchError, match=r"no entry called 'CE_GPU_OLD'.*CE_CPU_ONLY, CE_GPU_A100, GPU_METASITE"
    ):
        patch(original, "CE_GPU_OLD")
    comment = re.search(rb"<!--\s*<entry name=\"CE_GPU_OLD\".*?-->", original, re.DOTALL)
    assert comment is not None
    assert comment.group() in patch(original, "CE_GPU_A100", "CE_CPU_ONLY")


def test_a_config_d_file_keeps_its_tabs() -> None:
    original = CONFIG_D_XML.read_bytes()
    result = patch(original, "CONFIGD_GPU", label="config.d/10-gpu-sites.xml", global_files=False)
    added = added_lines(original, result)
    assert added[-5:] == [
        "\t\t\t<files>\n",
        *indented("\t\t\t\t", TARBALL_FILE[:1]),
        "\t\t\t\t\t" + TARBALL_FILE[1].strip() + "\n",
        "\t\t\t\t</file>\n",
        "\t\t\t</files>\n",
    ]
    assert "\t\t\t\t" + TRITON_ATTR + "\n" in added
    assert patch(result, "CONFIGD_GPU", global_files=False) == result


def test_a_config_d_file_can_also_carry_the_global_files() -> None:
    result = patch(CONFIG_D_XML.read_bytes(), "CONFIGD_GPU")
    assert [file.get("absfname") for file in parse(result).iterfind("files/file")] == [
        f"{PAYLOAD}/glidein_triton_setup.sh",
        f"{PAYLOAD}/glidein_triton_periodic.sh",
    ]


#: Plain entries directly inside <entry_sets> (GlideinWMS's unittests fixture Dev_Sites.xml has this shape).
ENTRY_SETS_XML = CONFIG_D_XML.parent / "20-entry-sets.xml"


def test_an_entry_directly_inside_entry_sets_is_patched_like_any_entry() -> None:
    original = ENTRY_SETS_XML.read_bytes()
    result = patch(original, "DEV_GPU_SITE", label="config.d/20-entry-sets.xml", global_files=False)
    assert removed_lines(original, result) == []  # only insertions: the rest is byte-identical
    assert added_lines(original, result) == [
        *indented(" " * 12, [TRITON_ATTR, ENTRY_GPUS_ATTR, SLOTS_ATTR]),
        *indented(" " * 12, TARBALL_FILE),
    ]
    (switch,) = named(parse(result), "entry_sets/entry[@name='DEV_GPU_SITE']/attrs/attr", "GLIDEIN_TRITON")
    assert switch.get("value") == "True"
    assert patch(result, "DEV_GPU_SITE", global_files=False) == result


def test_entries_inside_entry_sets_sit_beside_an_entry_set_and_are_found_by_name() -> None:
    original = ENTRY_SETS_XML.read_bytes()
    result = patch(original, "DEV_GPU_SITE", "DEV_FIXED_SITE", "DEV_POOL")
    root = parse(result)
    for where in ("entry[@name='DEV_GPU_SITE']", "entry[@name='DEV_FIXED_SITE']", "entry_set"):
        (found,) = root.iterfind(f"entry_sets/{where}")
        assert len(named(found, "attrs/attr", "GLIDEIN_TRITON")) == 1
        assert found.find("files/file").get("untar") == "True"  # type: ignore[union-attr]
    assert [file.get("absfname") for file in root.iterfind("files/file")] == [
        f"{PAYLOAD}/glidein_triton_setup.sh",
        f"{PAYLOAD}/glidein_triton_periodic.sh",
    ]
    assert patch(result, "DEV_GPU_SITE", "DEV_FIXED_SITE", "DEV_POOL") == result
    with pytest.raises(PatchError, match=r"part of entry_set 'DEV_POOL'"):
        patch(original, "DEV_POOL_CE1")
    with pytest.raises(PatchError, match=r"entries in this file: DEV_GPU_SITE, DEV_FIXED_SITE, DEV_POOL;"):
        patch(original, "DEV_OTHER")
    also_in_entries = original.replace(
        b"<entry_sets>", b'<entries><entry name="DEV_GPU_SITE"/></entries><entry_sets>'
    )
    with pytest.raises(PatchError, match=r"2 entries are called 'DEV_GPU_SITE'"):
        patch(also_in_entries, "DEV_GPU_SITE")


def test_crlf_and_latin1_files_stay_so() -> None:
    text = FACTORY_XML.read_text(encoding="utf-8").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    original = text.replace("\n", "\r\n").encode("latin-1")
    settings = (("GLIDEIN_TRITON", "True"), ("GLIDEIN_TRITON_IMAGE", "/cvmfs/images/tritonserver-µ"))
    result = patch(original, "CE_GPU_A100", settings=settings)
    assert b"\r\n" in result
    assert b"\n" not in result.replace(b"\r\n", b"")
    assert "Zürich".encode("latin-1") in result
    assert 'value="/cvmfs/images/tritonserver-µ"'.encode("latin-1") in result
    assert removed_lines(original, result) == []
    assert patch(result, "CE_GPU_A100", settings=settings) == result


def test_settings_become_attrs_in_order_and_are_never_duplicated() -> None:
    settings = (
        ("GLIDEIN_TRITON", "True"),
        ("GLIDEIN_TRITON_IMAGE", "/cvmfs/unpacked.cern.ch/tritonserver:24.08"),
        ("GLIDEIN_TRITON_REQUIRED", "True"),
    )
    result = patch(FACTORY_XML.read_bytes(), "CE_GPU_A100", settings=settings)
    result = patch(result, "CE_GPU_A100", settings=settings)
    (gpu_entry,) = named(parse(result), "entries/entry", "CE_GPU_A100")
    names = [attr.get("name") for attr in gpu_entry.iterfind("attrs/attr")]
    assert len(names) == len(set(names))
    written = {attr.get("name"): attr.get("value") for attr in gpu_entry.iterfind("attrs/attr")}
    assert [(name, written[name]) for name, _ in settings] == list(settings)
    assert names[-5:] == [name for name, _ in settings] + [
        "GLIDEIN_TRITON_ENTRY_GPUS",
        "GLIDEIN_Resource_Slots",
    ]


def test_an_equal_attr_written_differently_is_left_alone() -> None:
    original = FACTORY_XML.read_bytes().replace(
        b"         </attrs>\n         <files>\n            <!-- a site",
        b"         <attr value='True' name='GLIDEIN_TRITON' const='False'/>\n"
        b"         </attrs>\n         <files>\n            <!-- a site",
    )
    result = patch(original, "CE_GPU_A100", global_files=False)
    assert added_lines(original, result).count("            " + TRITON_ATTR + "\n") == 0
    assert len(named(parse(result), "entries/entry/attrs/attr", "GLIDEIN_TRITON")) == 1


def conflicting_switch() -> bytes:
    return FACTORY_XML.read_bytes().replace(
        b'value="OSGVOGPU,CMS"/>\n',
        b'value="OSGVOGPU,CMS"/>\n            <attr name="GLIDEIN_TRITON" const="True" value="False"/>\n',
    )


def test_a_conflicting_value_is_a_clear_error() -> None:
    with pytest.raises(PatchError) as raised:
        patch(conflicting_switch(), "CE_GPU_A100")
    message = str(raised.value)
    assert "entry 'CE_GPU_A100': <attr> 'GLIDEIN_TRITON' is already there" in message
    assert "const='True' where this command sets const='False'" in message
    assert "value='False' where this command sets value='True'" in message
    assert "--overwrite" in message


def test_overwrite_replaces_the_conflicting_values_in_place() -> None:
    original = conflicting_switch()
    result = patch(original, "CE_GPU_A100", overwrite=True, global_files=False)
    assert removed_lines(original, result) == [
        '            <attr name="GLIDEIN_TRITON" const="True" value="False"/>\n'
    ]
    assert '            <attr name="GLIDEIN_TRITON" const="False" value="True"/>\n' in added_lines(
        original, result
    )
    assert len(named(parse(result), "entries/entry/attrs/attr", "GLIDEIN_TRITON")) == 1


def test_a_script_from_another_payload_directory_is_a_conflict() -> None:
    original = FACTORY_XML.read_bytes().replace(
        b"</files>\n   <cvmfsexec_distro",
        b'   <file absfname="/old/glidein_triton_setup.sh" after_entry="True" executable="True"/>\n'
        b"   </files>\n   <cvmfsexec_distro",
    )
    with pytest.raises(
        PatchError, match=r"global <files>: <file> 'glidein_triton_setup.sh'.*absfname='/old/"
    ):
        patch(original, "CE_GPU_A100")
    result = patch(original, "CE_GPU_A100", overwrite=True)
    assert f'<file absfname="{PAYLOAD}/glidein_triton_setup.sh" after_entry="True"'.encode() in result
    assert result.count(b"glidein_triton_setup.sh") == 1


def test_startup_script_in_the_entry_files_is_refused() -> None:
    original = FACTORY_XML.read_bytes().replace(
        b"            <!-- a site validation script -->\n",
        b'            <file absfname="/x/glidein_triton_setup.sh" executable="True"/>\n',
    )
    with pytest.raises(PatchError, match=r"before singularity_setup\.sh"):
        patch(original, "CE_GPU_A100")


def test_a_frontend_file_is_not_a_factory_file() -> None:
    with pytest.raises(PatchError, match="not <glidein>"):
        patch(b"<frontend/>", "CE_GPU_A100")


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        ("GPUs,type=main", True),
        ("ioslot,2;gpus,1,,main", True),
        ("name=GPUs,number=2", True),
        ("ioslot", False),
    ],
)
def test_gpus_in_resource_slots_are_recognised(slots: str, expected: bool) -> None:
    assert has_gpus(slots) is expected


def copy_of(source: Path, directory: Path) -> Path:
    target = directory / source.name
    target.write_bytes(source.read_bytes())
    return target


def test_the_command_prints_a_diff_and_leaves_the_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = copy_of(FACTORY_XML, tmp_path)
    code = factory_cli.main(["--entry", "CE_GPU_A100", str(target)])
    out, err = capsys.readouterr()
    assert code == 1
    relative = str(target).lstrip("/")
    assert out.startswith(f"--- a/{relative}\n+++ b/{relative}\n@@ ")
    assert f"+            {TRITON_ATTR}\n" in out
    assert "dry run" in err
    assert target.read_bytes() == FACTORY_XML.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["glideinWMS.xml"]


def test_the_command_shows_the_diff_for_an_entry_inside_entry_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = copy_of(ENTRY_SETS_XML, tmp_path)
    assert factory_cli.main(["--entry", "DEV_GPU_SITE", str(target)]) == 1
    out, err = capsys.readouterr()
    assert f"+            {TRITON_ATTR}\n" in out
    assert "no entry called" not in err
    assert target.read_bytes() == ENTRY_SETS_XML.read_bytes()
    assert factory_cli.main(["--entry", "DEV_GPU_SITE", "--in-place", str(target)]) == 0
    assert factory_cli.main(["--entry", "DEV_GPU_SITE", "--in-place", str(target)]) == 0
    assert "nothing to change" in capsys.readouterr().err


def test_in_place_writes_a_backup_first_and_a_second_run_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = copy_of(FACTORY_XML, tmp_path)
    target.chmod(0o640)
    assert factory_cli.main(["--entry", "CE_GPU_A100", "--in-place", str(target)]) == 0
    assert (tmp_path / "glideinWMS.xml.bak").read_bytes() == FACTORY_XML.read_bytes()
    assert target.read_bytes() == patch(FACTORY_XML.read_bytes(), "CE_GPU_A100")
    assert target.stat().st_mode & 0o777 == 0o640
    capsys.readouterr()
    assert factory_cli.main(["--entry", "CE_GPU_A100", "--in-place", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "nothing to change" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["glideinWMS.xml", "glideinWMS.xml.bak"]


def test_a_later_change_keeps_the_older_backup(tmp_path: Path) -> None:
    target = copy_of(FACTORY_XML, tmp_path)
    assert factory_cli.main(["--entry", "CE_GPU_A100", "--in-place", str(target)]) == 0
    first = target.read_bytes()
    assert factory_cli.main(["--entry", "CE_CPU_ONLY", "--in-place", str(target)]) == 0
    assert (tmp_path / "glideinWMS.xml.bak").read_bytes() == FACTORY_XML.read_bytes()
    assert (tmp_path / "glideinWMS.xml.bak.1").read_bytes() == first


@pytest.mark.parametrize(
    ("content", "entry_name", "message"),
    [
        (b"<glidein><entries><entry name='A'></entries></glidein>", "A", "not well-formed XML"),
        (None, "NO_SUCH_ENTRY", "no entry called 'NO_SUCH_ENTRY'"),
        (None, "METASITE_GW4", "use --entry GPU_METASITE"),
        (b"CONFLICT", "CE_GPU_A100", "is already there"),
    ],
)
def test_bad_input_leaves_the_file_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, entry_name: str, message: str
) -> None:
    target = tmp_path / "glideinWMS.xml"
    data = FACTORY_XML.read_bytes() if content is None else content
    target.write_bytes(conflicting_switch() if content == b"CONFLICT" else data)
    before = target.read_bytes()
    code = factory_cli.main(["--entry", entry_name, "--in-place", str(target)])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert message in err
    assert f"{target} was not changed" in err
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["glideinWMS.xml"]


def test_a_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert factory_cli.main(["--entry", "A", str(tmp_path / "nope.xml")]) == 3
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "GLIDEIN_TRITON_NOPE=1"], "is not a setting: use one of GLIDEIN_TRITON, "),
        (
            ["--set", "GLIDEIN_TRITON_READY_TIMOUT=5"],
            "GLIDEIN_TRITON_READY_TIMOUT is not a setting: did you mean GLIDEIN_TRITON_READY_TIMEOUT?",
        ),
        (
            ["--set", "GLIDEIN_TRITON_TOKEN=True"],
            "GLIDEIN_TRITON_TOKEN is retired: the access tokens are gone",
        ),
        (["--set", "GLIDEIN_TRITON_GPU=maybe"], "GLIDEIN_TRITON_GPU='maybe' is not allowed"),
        (["--set", "GLIDEIN_TRITON_REQUIRED"], "use KEY=VALUE"),
        (["--period", "0"], "--period 0"),
        (["--periodic-prefix", "A B"], "--periodic-prefix"),
        (["--no-gpu-slots", "--gpu-slots", "x"], "not allowed with argument"),
    ],
)
def test_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        factory_cli.main(["--entry", "CE_GPU_A100", *arguments, str(FACTORY_XML)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_options_reach_the_xml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    payload_dir = tmp_path / "payload"
    arguments = [
        "--entry",
        "CE_GPU_A100",
        "--payload-dir",
        str(payload_dir),
        "--model-repository",
        "/cvmfs/models",
        "--set",
        "GLIDEIN_TRITON=False",
        "--set",
        "GLIDEIN_TRITON_MODELS=simple,densenet_onnx",
        "--no-gpu-slots",
        "--period",
        "120",
        "--periodic-prefix",
        "TRITON_",
        str(FACTORY_XML),
    ]
    assert factory_cli.main(arguments) == 1
    out, err = capsys.readouterr()
    assert (
        f'+      <file absfname="{payload_dir}/glidein_triton_periodic.sh" after_entry="True" const="True" '
        in out
    )
    assert 'period="120" prefix="TRITON_"/>' in out
    assert 'name="GLIDEIN_TRITON_PERIODIC_PERIOD"' in out  # the script bounds its waits by it
    assert (
        'name="GLIDEIN_TRITON" const="False" glidein_publish="False" job_publish="False" parameter="True" publish="True" type="string" value="False"/>'
        in out
    )
    assert 'name="GLIDEIN_TRITON_MODEL_REPOSITORY"' in out
    assert 'value="simple,densenet_onnx"' in out
    assert "GLIDEIN_Resource_Slots" not in out
    assert f"{payload_dir} has no glidein_triton_worker.tgz, glidein_triton_setup.sh" in err


def test_warnings_for_fixed_slots_and_a_missing_payload(capsys: pytest.CaptureFixture[str]) -> None:
    factory_cli.main(["--entry", "CE_CPU_ONLY", str(FACTORY_XML)])
    err = capsys.readouterr().err
    assert "entry 'CE_CPU_ONLY' has slots_layout='fixed'" in err
    assert f"run `glidein-triton payload {PAYLOAD}`" in err
    factory_cli.main(
        [
            "--entry",
            "CE_GPU_A100",
            "--no-global-files",
            "--payload-dir",
            str(FACTORY_XML.parent),
            str(FACTORY_XML),
        ]
    )
    err = capsys.readouterr().err
    assert "slots_layout" not in err  # CE_GPU_A100 is partitionable
    assert "has no glidein_triton_worker.tgz" in err


def test_a_file_changed_by_someone_else_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    target = copy_of(FACTORY_XML, tmp_path)
    with pytest.raises(PatchError, match="changed while it was being patched"):
        write_in_place(target, b"<glidein/>", b"<glidein></glidein>")
    assert target.read_bytes() == FACTORY_XML.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["glideinWMS.xml", "glideinWMS.xml.bak"]


def test_a_commented_out_attr_stays_a_comment_and_does_not_count() -> None:
    commented = b'            <!-- <attr name="GLIDEIN_TRITON" value="False"/> -->\n'
    original = FACTORY_XML.read_bytes().replace(
        b"            <!-- the site wants", commented + b"            <!-- the site wants"
    )
    result = patch(original, "CE_GPU_A100")
    assert commented in result
    assert removed_lines(original, result) == []
    assert len(named(parse(result), "entries/entry/attrs/attr", "GLIDEIN_TRITON")) == 1


CONST_IMAGES = (
    '            <attr name="SINGULARITY_IMAGES_DICT" const="True" glidein_publish="True" job_publish="True" '
    'parameter="True" publish="True" type="string" '
    'value="default:/cvmfs/unpacked.cern.ch/registry.hub.docker.com/cmssw/el9:x86_64{extra}"/>\n'
)


def with_entry_images(extra: str = "", const: str = "True") -> bytes:
    line = CONST_IMAGES.format(extra=extra).replace('const="True"', f'const="{const}"')
    return FACTORY_XML.read_bytes().replace(
        b"            <!-- the site wants", line.encode() + b"            <!-- the site wants"
    )


def notes_of(data: bytes, *arguments: str) -> list[str]:
    options = factory_cli.options_from(factory_cli.argument_parser().parse_args([*arguments, "x.xml"]))
    return factory_cli.patch(data, "glideinWMS.xml", options).warnings


def test_a_constant_images_dict_keeps_the_frontends_tritonserver_key_out() -> None:
    notes = notes_of(with_entry_images(), "--entry", "CE_GPU_A100")
    assert (
        "glideinWMS.xml: entry 'CE_GPU_A100' sets SINGULARITY_IMAGES_DICT const=\"True\": a frontend's value never "
        "arrives, nor its tritonserver key; give the server image here (--image, i.e. GLIDEIN_TRITON_IMAGE)"
    ) in "\n".join(notes)
    assert not any(
        "const" in note for note in notes_of(with_entry_images(const="False"), "--entry", "CE_GPU_A100")
    )
    image = ["--image", "/cvmfs/singularity.opensciencegrid.org/ml4gw/hermes/tritonserver:24.01"]
    assert not any(
        "const" in note for note in notes_of(with_entry_images(), "--entry", "CE_GPU_A100", *image)
    )
    # An unwritten const is the factory's default: True.
    unwritten = with_entry_images().replace(b' const="True" glidein_publish="True" job_publish="True"', b" ")
    assert any("const" in note for note in notes_of(unwritten, "--entry", "CE_GPU_A100"))


def test_remote_server_images_are_warned_about() -> None:
    remote = "docker://nvcr.io/nvidia/tritonserver:24.08-py3"
    notes = notes_of(FACTORY_XML.read_bytes(), "--entry", "CE_GPU_A100", "--image", remote)
    assert notes[0].startswith(f"{remote} is a remote image: every glidein downloads and converts it")
    in_dict = notes_of(with_entry_images(f",tritonserver:{remote}"), "--entry", "CE_GPU_A100")
    assert any(
        note.startswith(
            "glideinWMS.xml: entry 'CE_GPU_A100': the tritonserver key of SINGULARITY_IMAGES_DICT: docker://"
        )
        for note in in_dict
    )


def pool_attr(name: str, value: str) -> str:
    return (
        f'<attr name="{name}" const="False" glidein_publish="False" job_publish="False" parameter="True" '
        f'publish="True" type="string" value="{value}"/>'
    )


def test_a_pool_server_entry_gets_exactly_the_pool_settings_and_a_second_run_no_diff(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = copy_of(FACTORY_XML, tmp_path)
    original = target.read_bytes()
    arguments = ["--entry", "CE_GPU_A100", "--pool", "server", "--pool-name", "cms-gpu"]
    arguments += ["--address", "10.1.2.3", "--in-place", str(target)]
    assert factory_cli.main(arguments) == 0
    patched = target.read_bytes()
    assert removed_lines(original, patched) == []
    assert [line for line in added_lines(original, patched) if "<attr " in line] == indented(
        " " * 12,
        [
            TRITON_ATTR,
            pool_attr("GLIDEIN_TRITON_POOL", "server"),
            pool_attr("GLIDEIN_TRITON_POOL_NAME", "cms-gpu"),
            pool_attr("GLIDEIN_TRITON_ADDRESS", "10.1.2.3"),
            ENTRY_GPUS_ATTR,
            SLOTS_ATTR,
        ],
    )
    capsys.readouterr()
    assert factory_cli.main(arguments) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "nothing to change" in err
    assert target.read_bytes() == patched


def test_a_pool_client_entry_gets_the_role_and_the_default_pool_name() -> None:
    settings = factory_cli.collect_settings(
        factory_cli.argument_parser().parse_args(["--entry", "E", "--pool", "client", "x.xml"])
    )
    assert settings == (
        ("GLIDEIN_TRITON", "True"),
        ("GLIDEIN_TRITON_POOL", "client"),
        ("GLIDEIN_TRITON_POOL_NAME", "default"),
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--pool-name", "cms"], "--pool-name needs --pool server or --pool client"),
        (["--address", "10.1.2.3"], "--address needs --pool server or --pool client"),
        (["--pool", "client", "--address", "10.1.2.3"], "--address is where a pool server listens"),
        (
            ["--pool", "server", "--set", "GLIDEIN_TRITON_REMOTE=False"],
            "it is always remote, so GLIDEIN_TRITON_REMOTE=False contradicts --pool server",
        ),
        (
            ["--pool", "server", "--set", "GLIDEIN_TRITON_POOL=client"],
            "--set 'GLIDEIN_TRITON_POOL=client' contradicts --pool server",
        ),
        (["--pool", "server", "--pool-name", "a b"], "GLIDEIN_TRITON_POOL_NAME='a b' is not a pool name"),
        (["--pool", "server", "--address", "300.1.1.1"], "'300.1.1.1' is not an IPv4 address"),
        (["--pool", "both"], "invalid choice: 'both'"),
    ],
)
def test_contradictory_pool_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        factory_cli.main(["--entry", "CE_GPU_A100", *arguments, str(FACTORY_XML)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_a_pool_server_entry_without_gpus_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--entry", "CE_GPU_A100", "--pool", "server", "--no-gpu-slots", str(FACTORY_XML)]
    assert factory_cli.main(arguments) == 1
    assert "warning: --pool server with --no-gpu-slots" in capsys.readouterr().err
    assert factory_cli.main(["--entry", "CE_GPU_A100", "--pool", "server", str(FACTORY_XML)]) == 1
    assert "--no-gpu-slots" not in capsys.readouterr().err
