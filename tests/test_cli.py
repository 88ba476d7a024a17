"""The command line's conventions: the user commands listed, the developer ones runnable but not listed, help
without reST markup, JSON on a usage error of ``check --json``, and a missing extra named, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from glidein_triton import __version__, cli
from glidein_triton.operator.xmlpatch.command import EXIT_ERROR, unified_diff

ALL_COMMANDS = [*cli.COMMANDS, *cli.DEVELOPER_COMMANDS]


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_the_developer_commands_are_not_listed_but_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    listed = capsys.readouterr().out
    commands = listed.split("positional arguments:")[1].split("options:")[0]
    for name in cli.DEVELOPER_COMMANDS:
        assert name not in commands
        assert help_of(name, capsys).startswith(f"usage: glidein-triton {name}")
    assert all(name in commands for name in cli.COMMANDS)
    developer = (
        "Developer commands (docs/testing.md): settings-doc, troubleshooting-doc, reliability-doc, soak."
    )
    assert developer in " ".join(listed.split())  # (argparse wraps the epilog)


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_no_help_shows_rest_markup(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(command, capsys)
    assert "``" not in text
    assert not [role for role in ("mod:`", "func:`", "class:`", "meth:`") if role in text]


def test_every_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    soak = help_of("soak", capsys)
    runtime = soak.split("--runtime {process,apptainer}")[2]
    assert runtime.split("--work-dir")[0].strip().startswith("process: run tritonserver directly")


def test_payload_help_gives_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert f"Exit code: 0 written, {EXIT_ERROR} the payload could not be built or written, 2 bad usage." in (
        " ".join(help_of("payload", capsys).split())
    )


def test_check_json_answers_a_usage_error_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", "--json", "--no-such-option"])
    assert exited.value.code == 2
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "can_run": None,
        "exit_code": 2,
        "usage_error": "glidein-triton check: unrecognized arguments: --no-such-option",
    }


def test_diff_headers_are_relative_to_the_root() -> None:
    lines = unified_diff(b"a\n", b"b\n", "utf-8", "/etc/gwms-factory/glideinWMS.xml").splitlines()
    assert lines[:2] == ["--- a/etc/gwms-factory/glideinWMS.xml", "+++ b/etc/gwms-factory/glideinWMS.xml"]


def without(modules: list[str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``glidein-triton ARGV`` in a Python where ``modules`` cannot be imported (an extra not installed)."""
    code = (
        "import sys\n"
        f"for name in {modules!r}: sys.modules[name] = None\n"
        "from glidein_triton.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("modules", "argv", "extra"),
    [
        (["numpy"], ["demo"], "local"),
        (["psutil"], ["soak", "--cycles", "1"], "local"),
        (["pytriton"], ["soak", "--cycles", "1"], "local"),
        (["tritonclient"], ["local-job", "--", "true"], "local"),
        (["lxml"], ["factory-xml", "--entry", "E", "glideinWMS.xml"], "operator"),
        (["htcondor2"], ["discover", "--pool", "x"], "job"),
    ],
)
def test_a_missing_extra_is_named_not_a_traceback(modules: list[str], argv: list[str], extra: str) -> None:
    result = without(modules, argv)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    if modules == ["pytriton"]:
        assert (
            "the local Triton server needs nvidia-pytriton (Linux, glibc >= 2.35), of the [local]"
            in result.stderr
        )
    else:
        assert f"glidein-triton {argv[0]}: needs the [{extra}] extra of glidein-triton" in result.stderr
    assert (
        f"python3 -m pip install 'dist/glidein_triton-{__version__}-py3-none-any.whl[{extra}]'"
        in result.stderr
    )
    assert f"or '.[{extra}]' there" in result.stderr


def test_another_import_error_is_not_hidden() -> None:
    result = without(["glidein_triton.job.discover"], ["discover"])
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ModuleNotFoundError" in result.stderr
