"""The plugin's files whatever the umask, and state files it did not write (issue 22, item 5).

A glidein started with umask 000 left ``triton/`` 0777: another local user replaced state.json and the
periodic script ran the command in it. These run the glidein as an unprivileged pool account (PILOT_UID)
with another user (OTHER_UID) beside it, as deployed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local.glidein import cron_lines
from glidein_triton.worker import files, glidein_paths
from glidein_triton.worker.state import ServerState

from .support import (
    AS_ROOT,
    OTHER_UID,
    PILOT_UID,
    pilot_demo,
    run_as,
    run_script_as_pilot,
    stop_as_pilot,
    user_directory,
)

needs_root = pytest.mark.skipif(not AS_ROOT, reason="switching to the pilot and other users needs root")


@pytest.fixture
def pilot_home() -> Iterator[Path]:
    """A directory of the pilot account, open to others for reading (as a glidein's scratch may be)."""
    path = user_directory(PILOT_UID, 0o755)
    yield path
    shutil.rmtree(path)


def forged_state(marker: Path) -> dict[str, object]:
    """A state file as another user would write it: a restart of a server that is down runs its commands."""
    command = ["/bin/sh", "-c", f"echo ran >> {marker}"]
    return {
        "runtime": "process",
        "http_port": 9,  # nothing answers: the server looks down, and the periodic script restarts it
        "argv": command,
        "prepare": [command],
        "teardown": [command],
        "environment": {"PATH": "/usr/bin:/bin"},
        "restart_limit": 3,
        "ready_timeout": 1,
        "periodic_period": 10,
    }


def run_periodic_as_pilot(work_dir: Path) -> str:
    """The periodic script's Python as the startd cron runs it, as the pilot; its stdout."""
    result = run_as(
        PILOT_UID,
        [sys.executable, "-m", "glidein_triton.worker.periodic", str(work_dir / "glidein_config")],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GLIDEIN_PERIODIC_SCRIPT": "true"},
        cwd="/",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def pilot_glidein(home: Path) -> Path:
    """A work directory of the pilot with triton/ as today's code left it under umask 000 (0777)."""
    work_dir = home / "glidein"
    directory = glidein_paths.plugin_dir(work_dir)
    directory.mkdir(parents=True)
    (work_dir / "glidein_config").write_text("")
    directory.chmod(0o777)
    for path in (work_dir, directory, work_dir / "glidein_config"):
        os.chown(path, PILOT_UID, PILOT_UID)
    return work_dir


def test_a_state_file_another_user_could_have_written_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "triton"
    path = directory / glidein_paths.STATE_FILE_NAME
    ServerState(runtime="process", pid=5).save(path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert ServerState.load(path) is not None
    path.chmod(0o644)
    assert ServerState.load(path) is None
    with pytest.raises(files.UntrustedFileError, match="open to others"):
        files.read_trusted(path)
    path.chmod(0o600)
    directory.chmod(0o777)
    with pytest.raises(files.UntrustedFileError, match=r"directory of .* is writable by others"):
        files.read_trusted(path)
    directory.chmod(0o700)
    other = tmp_path / "elsewhere.json"
    path.rename(other)
    path.symlink_to(other)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        files.read_trusted(path)
    path.unlink()
    os.link(other, path)  # a second name: someone else's link to the plugin's file, or to theirs
    with pytest.raises(files.UntrustedFileError, match="not a plain file with one name"):
        files.read_trusted(path)


def test_private_directory_closes_an_existing_one_and_refuses_a_link(tmp_path: Path) -> None:
    opened = tmp_path / "triton"
    opened.mkdir(mode=0o777)
    opened.chmod(0o777)
    files.private_directory(opened)
    assert stat.S_IMODE(opened.stat().st_mode) == 0o700
    (tmp_path / "link").symlink_to(opened)
    with pytest.raises(files.UntrustedFileError, match="not a directory of this user"):
        files.private_directory(tmp_path / "link")


@needs_root
@pytest.mark.parametrize("tampering", ["replaced", "edited"])
def test_a_state_file_of_another_user_runs_nothing(pilot_home: Path, tampering: str) -> None:
    """OTHER_UID replaces state.json in a 0777 triton/, or edits one left open: refused, nothing run."""
    work_dir = pilot_glidein(pilot_home)
    path = glidein_paths.state_file(work_dir)
    marker = pilot_home / "ran"
    content = json.dumps(forged_state(marker))
    if tampering == "replaced":
        writer = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    else:  # the pilot's own file, left writable by all
        run_as(PILOT_UID, [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('{}')", str(path)])
        path.chmod(0o666)
        writer = "import sys; open(sys.argv[1], 'r+').write(sys.argv[2])"
    written = run_as(OTHER_UID, [sys.executable, "-c", writer, str(path), content])
    assert written.returncode == 0, written.stderr
    assert path.stat().st_uid == (OTHER_UID if tampering == "replaced" else PILOT_UID)

    output = run_periodic_as_pilot(work_dir)
    assert not marker.exists(), f"the periodic script ran the command of another user's state file: {output}"
    assert "state file not trusted" in output
    assert "TritonReady = False" in output


@needs_root
@pytest.mark.server
def test_a_plugin_directory_made_by_another_user_is_refused(pilot_home: Path) -> None:
    """In a work directory others may write (umask 000), OTHER_UID made triton/ first: never used."""
    glidein, environment = pilot_demo(pilot_home)
    glidein.root.chmod(0o777)
    planted = glidein_paths.plugin_dir(glidein.root)
    made = run_as(
        OTHER_UID,
        [sys.executable, "-c", "import os, sys; os.mkdir(sys.argv[1], 0o777)", str(planted)],
        umask=0,
    )
    assert made.returncode == 0, made.stderr
    result = run_script_as_pilot(glidein, glidein.startup_script, environment)
    try:
        assert result.returncode == 0, result.stderr  # not required: the glidein runs on without Triton
        assert "is not a directory of this user" in result.stderr
        assert glidein.published()[0]["HasTriton"] == "False"
        assert list(planted.iterdir()) == [], "the plugin wrote into another user's directory"
    finally:
        stop_as_pilot(glidein, environment)


@needs_root
@pytest.mark.server
def test_startup_under_umask_000_leaves_every_path_private(pilot_home: Path) -> None:
    """The whole startup (real server, agent) and a periodic run as the pilot with umask 000."""
    glidein, environment = pilot_demo(pilot_home)
    result = run_script_as_pilot(glidein, glidein.startup_script, environment)
    try:
        assert result.returncode == 0, result.stderr
        periodic = run_script_as_pilot(
            glidein,
            glidein.main_dir / "glidein_triton_periodic.sh",
            {**environment, "GLIDEIN_PERIODIC_SCRIPT": "true"},
        )
        directory = glidein_paths.plugin_dir(glidein.root)
        open_paths = []
        for path in [directory, *directory.rglob("*")]:
            status = path.lstat()
            if stat.S_ISLNK(status.st_mode):
                continue  # the job repository's links; what they name is checked where it lives
            expected = 0o700 if stat.S_ISDIR(status.st_mode) else 0o600
            if stat.S_IMODE(status.st_mode) & ~expected or status.st_uid != PILOT_UID:
                open_paths.append(f"{path} {stat.S_IMODE(status.st_mode):04o} uid {status.st_uid}")
        assert not open_paths, f"open to other users under umask 000: {open_paths}"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert "TritonReady = True" in periodic.stdout, periodic.stderr
        resident = int(cron_lines(periodic.stdout)["TritonResidentMemoryMB"])
        assert resident > 50, "the server's resident memory in MiB (the demo's python model: ~70)"
    finally:
        stop_as_pilot(glidein, environment)
