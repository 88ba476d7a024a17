"""The startup shell script: the switch-off fast path, and failures before Python takes over."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glidein_triton.local.glidein import GlideinDied, SimulatedGlidein
from glidein_triton.worker.publish import ATTRIBUTE_BY_KEY

from .support import write_executable

#: What the script and the helpers need from the system, for a PATH without any Python.
TOOLS = (
    "bash",
    "grep",
    "cut",
    "tr",
    "cat",
    "awk",
    "flock",
    "mv",
    "cp",
    "rm",
    "date",
    "sed",
    "dd",
    "tac",
    "sort",
    "stat",
    "chmod",
    "ln",
    "ps",
    "sleep",
    "dirname",
    "basename",
    "head",
    "tail",
    "env",
    "mktemp",
    "realpath",
    "readlink",
)


@pytest.mark.scripts
@pytest.mark.parametrize("switch", [None, "False", "0", "no", " N "])
def test_switch_off_publishes_has_triton_false(glidein: SimulatedGlidein, switch: str | None) -> None:
    if switch is not None:
        glidein.set("GLIDEIN_TRITON", switch)
    result = glidein.run_startup()
    assert result.returncode == 0
    assert (result.status, result.metrics) == ("OK", {"HasTriton": "False"})
    attributes, environment = glidein.published()
    assert attributes == {"HasTriton": "False"}
    assert environment == {"HAS_TRITON": "False"}
    # The shell fast path writes the same condor_vars line as the Python side would.
    assert glidein.condor_vars() == [ATTRIBUTE_BY_KEY["HAS_TRITON"].fields()]
    assert "GLIDEIN_TRITON_PYTHON" not in glidein.config()  # Python was never started


@pytest.mark.scripts
def test_invalid_switch_is_a_config_failure_not_fatal(glidein: SimulatedGlidein) -> None:
    glidein.set("GLIDEIN_TRITON", "maybe")
    result = glidein.run_startup()
    assert result.returncode == 0
    assert result.status == "OK"
    assert result.metrics["TritonFailure"] == "Config"
    assert "GLIDEIN_TRITON=" in result.metrics["TritonFailureDetail"]
    attributes, _ = glidein.published()
    assert attributes["HasTriton"] == "False"
    assert attributes["TritonFailure"].startswith('"Config: GLIDEIN_TRITON=maybe is not a truth value')


@pytest.mark.scripts
def test_invalid_setting_when_required_fails_the_glidein(glidein: SimulatedGlidein) -> None:
    glidein.set("GLIDEIN_TRITON", "True")
    glidein.set("GLIDEIN_TRITON_REQUIRED", "True")
    glidein.set("GLIDEIN_TRITON_RUNTIME", "docker")
    result = glidein.run_startup()
    assert result.returncode == 1
    assert result.status == "ERROR"
    assert result.failure == "Config"
    assert "GLIDEIN_TRITON_RUNTIME='docker'" in result.detail
    assert "apptainer, singularity, process" in result.detail
    assert glidein.published()[0]["HasTriton"] == "False"


@pytest.mark.scripts
@pytest.mark.parametrize("required", [False, True])
def test_missing_worker_code_is_corruption(glidein: SimulatedGlidein, required: bool) -> None:
    glidein.set("GLIDEIN_TRITON", "True")
    glidein.set("ENTRY_GLIDEIN_TRITON_DIR", str(glidein.root / "nowhere"))
    glidein.set("GLIDEIN_TRITON_REQUIRED", str(required))
    result = glidein.run_startup()
    assert result.returncode == (1 if required else 0)
    if required:
        assert (result.status, result.failure) == ("ERROR", "Corruption")
        assert "worker code not found" in result.detail
    else:
        assert (result.status, result.metrics["TritonFailure"]) == ("OK", "Corruption")
    assert glidein.published()[0]["HasTriton"] == "False"
    assert glidein.published()[0]["TritonFailure"].startswith('"Corruption: worker code not found')


def tools_without_python(bin_dir: Path) -> Path:
    """A PATH directory with the system tools the script and the helpers need, and no Python."""
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return bin_dir


@pytest.mark.scripts
def test_no_suitable_python(glidein: SimulatedGlidein, tmp_path: Path) -> None:
    bin_dir = tools_without_python(tmp_path / "bin")
    # An old Python, as on some worker nodes: it fails the version check.
    write_executable(bin_dir / "python3", "#!/bin/bash\nexit 1\n")
    glidein.set("GLIDEIN_TRITON", "True")
    glidein.set("GLIDEIN_TRITON_PYTHON", "/opt/no/python")
    result = glidein.run_startup(env={**os.environ, "PATH": str(bin_dir)})
    assert result.returncode == 0
    assert result.metrics["TritonFailure"] == "WN_Resource"
    assert "no Python >= 3.9 found (tried: /opt/no/python python3" in result.stderr
    assert glidein.published()[0]["TritonFailure"].startswith('"WN_Resource: no Python')


def python36(bin_dir: Path) -> Path:
    """EL8's python3: the real Python 3.6 when this machine has one (pyenv), else a stand-in printing what it
    prints for the startup script's version probe."""
    real = sorted(Path.home().glob(".pyenv/versions/3.6*/bin/python3.6"))
    link = bin_dir / "python3"
    if real:
        link.symlink_to(real[0])
        return link
    return write_executable(link, f'#!/bin/bash\necho "3.6 {link}"\n')


@pytest.mark.scripts
def test_an_el8_python_is_named_in_the_failure_with_what_to_set(
    glidein: SimulatedGlidein, tmp_path: Path
) -> None:
    bin_dir = tools_without_python(tmp_path / "bin")
    old = python36(bin_dir)
    glidein.set("GLIDEIN_TRITON", "True")
    result = glidein.run_startup(env={**os.environ, "PATH": str(bin_dir)})
    assert result.returncode == 0
    assert result.metrics["TritonFailure"] == "WN_Resource"
    failure = glidein.published()[0]["TritonFailure"]
    assert f"/bin/python3; python3 is 3.6 ({old})): set GLIDEIN_TRITON_PYTHON" in failure
    assert "/cvmfs/sft.cern.ch/lcg/views/LCG_107/x86_64-el8-gcc11-opt/bin/python3" in failure
    assert (
        "set GLIDEIN_TRITON_PYTHON to a Python >= 3.9 (on EL8, where python3 is 3.6: install the python39"
        in failure
    )


@pytest.mark.scripts
@pytest.mark.parametrize("existing", [["log"], ["execute"]])
def test_the_simulated_condor_startup_fails_on_half_made_monitor_dirs(
    glidein: SimulatedGlidein, existing: list[str]
) -> None:
    """condor_startup.sh's ``mkdir log execute`` fails the glidein when only one of them is there."""
    for name in existing:
        (glidein.root / name).mkdir()
    with pytest.raises(GlideinDied, match="Error creating monitor dirs"):
        glidein.run_startup()


@pytest.mark.scripts
def test_the_simulated_condor_startup_keeps_both_monitor_dirs(glidein: SimulatedGlidein) -> None:
    (glidein.root / "log").mkdir()
    (glidein.root / "log" / "StartdLog").write_text("kept")
    (glidein.root / "execute").mkdir()
    assert glidein.run_startup().returncode == 0
    assert (glidein.root / "log" / "StartdLog").read_text() == "kept"


SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "glidein_triton" / "scripts"
#: (The pre-job reads no glidein_config: it waits for the agent's answer in the job's sandbox.)
READER_SCRIPTS = (
    "glidein_triton_setup.sh",
    "glidein_triton_periodic.sh",
    "glidein_triton_cleanup.sh",
)


def config_reader(script: str) -> str:
    (line,) = [
        line for line in (SCRIPTS_DIR / script).read_text().splitlines() if line.startswith("config_value()")
    ]
    return line


def test_every_script_reads_glidein_config_with_the_same_reader() -> None:
    """Scripts are separate files on the node, so each carries the reader: the copies must be the same."""
    readers = {script: config_reader(script) for script in READER_SCRIPTS}
    assert len(set(readers.values())) == 1, readers
    for script in READER_SCRIPTS:
        text = (SCRIPTS_DIR / script).read_text()
        assert "grep -m1" not in text
        assert "tail -n 1 | cut" not in text  # the old per-script readers


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_reader_takes_the_last_line_of_a_key_whole(tmp_path: Path, shell: str) -> None:
    config = tmp_path / "glidein_config"
    config.write_text(
        "GLIDEIN_TRITON_DIR /first\n"
        "GLIDEIN_TRITON True\n"
        "GLIDEIN_TRITON_DIR /second dir/with  two spaces \n"
        "XGLIDEIN_TRITON_DIR /not-this\n"
    )
    script = config_reader("glidein_triton_setup.sh") + '\nconfig_value "$1" "$2"'
    for key, expected in (
        ("GLIDEIN_TRITON_DIR", "/second dir/with  two spaces \n"),
        ("GLIDEIN_TRITON", "True\n"),
        ("MISSING", "\n"),
    ):
        result = subprocess.run(
            [shell, "-c", script, "reader", key, str(config)], capture_output=True, text=True, check=True
        )
        assert result.stdout == expected


@pytest.mark.parametrize("code", [0, 3])
def test_worker_scripts_end_at_once_with_their_output_flushed(code: int) -> None:
    program = (
        "import logging, sys; from glidein_triton.worker import logs; logs.configure('t'); "
        "print('Attribute = 1'); logging.getLogger('glidein_triton').info('logged'); "
        f"import atexit; atexit.register(print, 'teardown'); logs.exit_now({code})"
    )
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert ended.returncode == code
    assert ended.stdout == "Attribute = 1\n"  # flushed into a pipe; the interpreter's teardown skipped
    assert ended.stderr.endswith(" t INFO logged\n")
