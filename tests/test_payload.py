"""``glidein-triton payload``: the files the factory serves, their checksums, and the XML that lists them."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest
from lxml import etree

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.operator import factory_cli, payload, payload_cli
from glidein_triton.operator.factory_patch import FactoryOptions
from glidein_triton.operator.xmlpatch.command import EXIT_ERROR

from .support import FACTORY_XML, PYTHON39, named, parse


def extract(tar: tarfile.TarFile, target: Path) -> None:
    """Untar with the "data" filter where this Python has it (3.11.4 and newer; not Debian's 3.11.2)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
    else:
        tar.extractall(target)  # noqa: S202 (the payload the test just built)


def build(directory: Path, capsys: pytest.CaptureFixture[str], *arguments: str) -> etree._Element:
    """Run the command; the XML it printed, wrapped in one element."""
    assert payload_cli.main([str(directory), *arguments]) == 0
    return etree.fromstring(f"<snippet>{capsys.readouterr().out}</snippet>")


def test_the_payload_has_the_scripts_the_tarball_and_their_checksums(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "factory" / "glidein-triton"
    build(directory, capsys)
    assert sorted(path.name for path in directory.iterdir()) == [
        "SHA256SUMS",
        "glidein_triton_periodic.sh",
        "glidein_triton_setup.sh",
        "glidein_triton_worker.tgz",
    ]
    assert (directory / payload.SETUP_SCRIPT).stat().st_mode & 0o777 == 0o755
    assert (directory / payload.PERIODIC_SCRIPT).stat().st_mode & 0o777 == 0o755
    assert (directory / payload.WORKER_TARBALL).stat().st_mode & 0o777 == 0o644
    assert (directory / payload.WORKER_TARBALL).read_bytes() == payload.worker_tarball_bytes()
    assert (directory / payload.SETUP_SCRIPT).read_bytes() == (
        payload.SCRIPTS_DIR / payload.SETUP_SCRIPT
    ).read_bytes()
    sums = (directory / "SHA256SUMS").read_text().splitlines()
    assert sums == [
        f"{hashlib.sha256((directory / name).read_bytes()).hexdigest()}  {name}"
        for name in (payload.SETUP_SCRIPT, payload.WORKER_TARBALL, payload.PERIODIC_SCRIPT)
    ]
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=directory, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_printed_xml_lists_the_files_by_their_absolute_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    snippet = build(Path("relative/dir"), capsys)
    directory = tmp_path / "relative" / "dir"
    files = snippet.findall("file")
    assert [file.get("absfname") for file in files] == [
        str(directory / payload.SETUP_SCRIPT),
        str(directory / payload.PERIODIC_SCRIPT),
        str(directory / payload.WORKER_TARBALL),
    ]
    assert all(Path(file.get("absfname", "")).is_file() for file in files)
    assert files[0].get("after_entry") == "True"
    assert files[1].get("after_entry") == "True"
    assert int(files[1].get("period", "0")) > 0
    assert files[2].find("untar_options").get("absdir_outattr") == payload.CODE_DIR_ATTRIBUTE  # type: ignore[union-attr]
    assert [attr.get("name") for attr in snippet.findall("attr")] == [
        "GLIDEIN_TRITON",
        "GLIDEIN_TRITON_ENTRY_GPUS",
        "GLIDEIN_Resource_Slots",
    ]


def test_the_periodic_script_is_served_when_there_is_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = tmp_path / "scripts"
    shutil.copytree(payload.SCRIPTS_DIR, scripts)
    (scripts / payload.PERIODIC_SCRIPT).write_text("#!/bin/bash\necho TritonReady = True\n")
    monkeypatch.setattr(payload, "SCRIPTS_DIR", scripts)
    directory = tmp_path / "payload"
    snippet = build(directory, capsys, "--period", "120")
    assert (directory / payload.PERIODIC_SCRIPT).stat().st_mode & 0o777 == 0o755
    assert payload.PERIODIC_SCRIPT in (directory / "SHA256SUMS").read_text()
    (periodic,) = [file for file in snippet.findall("file") if file.get("period")]
    assert periodic.get("absfname") == str(directory / payload.PERIODIC_SCRIPT)
    assert (periodic.get("period"), periodic.get("prefix"), periodic.get("after_entry")) == (
        "120",
        "NOPREFIX",
        "True",
    )


def test_building_twice_gives_the_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path, capsys)
    first = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    build(tmp_path, capsys)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == first


def test_an_unwritable_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert payload_cli.main([str(tmp_path / "file" / "payload")]) == 3
    assert "cannot write the payload" in capsys.readouterr().err


def test_factory_xml_finds_a_built_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path, capsys)
    factory_cli.main(
        ["--entry", "CE_GPU_A100", "--payload-dir", str(tmp_path), "--no-periodic", str(FACTORY_XML)]
    )
    assert "has no" not in capsys.readouterr().err


def test_the_served_files_work_where_the_xml_puts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Process the patched entry as glidein_startup.sh would: entry files, then the global after_entry files.

    The tarball is unpacked in the entry directory (ENTRY_GLIDEIN_TRITON_DIR), the startup script runs from
    the main directory as ``glidein_triton_setup.sh glidein_config main`` and must find the worker code.
    The server binary does not exist here: a reported (not fatal) failure after the code was found.
    """
    payload_dir = tmp_path / "payload"
    build(payload_dir, capsys)
    settings = (
        ("GLIDEIN_TRITON", "True"),
        ("GLIDEIN_TRITON_RUNTIME", "process"),
        ("GLIDEIN_TRITON_GPU", "cpu"),
        ("GLIDEIN_TRITON_SERVER_BINARY", str(tmp_path / "no-tritonserver")),
    )
    options = FactoryOptions(("CE_GPU_A100",), str(payload_dir), settings=settings, period=0)
    root = parse(factory_cli.patch(FACTORY_XML.read_bytes(), "glideinWMS.xml", options).data)
    (entry,) = named(root, "entries/entry", "CE_GPU_A100")
    glidein = SimulatedGlidein(tmp_path / "glidein", entry="CE_GPU_A100").layout()
    for attr in entry.iterfind("attrs/attr"):
        glidein.set(attr.get("name", ""), attr.get("value", ""))
    for file in entry.iterfind("files/file[@untar='True']"):
        untar = file.find("untar_options")
        assert untar is not None
        target = glidein.entry_dir / untar.get("dir", "")
        target.mkdir()
        with tarfile.open(
            fileobj=io.BytesIO(Path(file.get("absfname", "")).read_bytes()), mode="r:gz"
        ) as tar:
            extract(tar, target)
        glidein.set(f"ENTRY_{untar.get('absdir_outattr')}", str(target))
    (setup,) = [
        file
        for file in root.iterfind("files/file")
        if file.get("absfname", "").endswith(payload.SETUP_SCRIPT)
    ]
    assert setup.get("after_entry") == "True"
    script = glidein.main_dir / PurePosixPath(setup.get("absfname", "")).name
    shutil.copyfile(setup.get("absfname", ""), script)
    script.chmod(0o755)
    result = subprocess.run(
        [str(script), "glidein_config", "main"],
        check=False,
        cwd=glidein.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config = glidein.config()
    assert config["GLIDEIN_TRITON_CODE_DIR"] == str(glidein.entry_dir / payload.UNTAR_DIR)
    assert config["HAS_TRITON"] == "False"
    assert not config["TRITON_FAILURE"].startswith("Corruption"), config["TRITON_FAILURE"]
    assert "no-tritonserver" in config["TRITON_FAILURE"]


def import_startup(python: str, code_dir: Path) -> list[str]:
    """``python`` imports the startup module and the word_rules module from ``code_dir``: their files, and
    whether word_rules was edited."""
    run = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import glidein_triton.worker.startup as s; "
            "from glidein_triton.worker import word_rules; print(s.__file__, hasattr(word_rules, 'EDITED'))",
            str(code_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.split()


@pytest.mark.parametrize("with_python39", [True, False])
def test_the_worker_code_is_imported_from_the_shipped_bytecode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], with_python39: bool
) -> None:
    """A glidein whose Python has bytecode in the tarball compiles nothing; a changed module is compiled."""
    if with_python39 and PYTHON39 is None:
        pytest.skip("no Python 3.9 here")
    other = PYTHON39 if with_python39 else None
    served = tmp_path / "served"
    build(served, capsys, *(["--python", other] if other else []))
    code = tmp_path / "code"
    with tarfile.open(served / payload.WORKER_TARBALL) as tar:
        extract(tar, code)
    sources = list(code.rglob("*.py"))
    pythons = [sys.executable, *([other] if other else [])]
    tags = {
        subprocess.check_output(
            [p, "-c", "import sys; print(sys.implementation.cache_tag)"], text=True
        ).strip()
        for p in pythons
    }
    shipped = {path: path.read_bytes() for path in code.rglob("*.pyc")}
    assert sorted(path.name.split(".")[1] for path in shipped) == sorted(list(tags) * len(sources))
    stale = code / "glidein_triton" / "worker" / "word_rules.py"
    stale.write_text(stale.read_text() + "\nEDITED = True\n")  # its bytecode no longer matches its source
    for python in pythons:
        assert import_startup(python, code) == [
            str(code / "glidein_triton" / "worker" / "startup.py"),
            "True",
        ]
    rewritten = sorted(path.name for path, data in shipped.items() if path.read_bytes() != data)
    assert rewritten == sorted(f"word_rules.{tag}.pyc" for tag in tags)  # the others were used as shipped
    assert set(code.rglob("*.pyc")) == set(shipped)


def test_the_tarball_is_the_same_whatever_the_hash_seed() -> None:
    program = "import sys; from glidein_triton.operator import payload; sys.stdout.buffer.write(payload.worker_tarball_bytes())"
    built = [
        subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert built[0] == built[1]


def test_a_python_that_cannot_compile_the_worker_code_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert payload_cli.main([str(tmp_path / "served"), "--python", "/bin/false"]) == EXIT_ERROR
    assert (
        "glidein-triton: /bin/false cannot compile the worker code (a Python >= 3.9 is needed)"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "served").exists()
