"""``glidein-triton soak``: measurements, the growth verdict, and cycles on the real server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from glidein_triton.local import node_usage as resources
from glidein_triton.local import soak
from glidein_triton.local.leftovers import SHARED_MEMORY

from .support import AS_ROOT, as_user

#: A uid that no other test runs as.
SOLE_UID = 40013

REPO = Path(__file__).resolve().parent.parent
GLIDEIN_TRITON = Path(sys.executable).parent / "glidein-triton"


def test_each_measurement_sees_one_more(tmp_path: Path) -> None:
    descriptors = resources.open_descriptors()
    with (tmp_path / "file").open("wb") as handle:
        assert resources.open_descriptors() == descriptors + 1
        handle.write(bytes(8192))
    assert resources.open_descriptors() == descriptors
    assert resources.disk_usage(tmp_path) >= 8192
    assert resources.disk_usage(tmp_path, skip=tmp_path / "nothing") == resources.disk_usage(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "big").write_bytes(bytes(65536))
    assert resources.disk_usage(tmp_path, skip=tmp_path / "sub") < resources.disk_usage(tmp_path)
    with socket.socket() as listener:
        ports = resources.listening_tcp_ports()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert resources.listening_tcp_ports() >= ports + 1
    # As root, a user of its own: on a shared machine other processes of root come and go meanwhile.
    uid = SOLE_UID if AS_ROOT else os.getuid()
    processes = resources.user_processes(uid)
    with subprocess.Popen(["sleep", "30"], **(as_user(uid) if AS_ROOT else {})) as child:  # type: ignore[call-overload]
        try:
            assert resources.user_processes(uid) >= processes + 1
        finally:
            child.kill()  # a failed assertion must not wait for the sleep


def test_shared_memory_measurements() -> None:
    region = SHARED_MEMORY / f"glidein-triton-test-{os.getpid()}"
    files, kib = resources.shared_memory_files(), resources.shared_memory_kib()
    try:
        region.write_bytes(bytes(64 * 1024))
        assert resources.shared_memory_files() >= files + 1
        assert resources.shared_memory_kib() >= kib + 64
    finally:
        region.unlink()


def constant(value: float) -> resources.Metric:
    return resources.Metric("m", f"metric at {value}", 2, lambda: value)


def test_growth_beyond_the_tolerance_fails() -> None:
    text, within = soak.table([(constant(3), 10, 12), (constant(1), 5, 4)])
    assert within
    assert text.splitlines()[1].split()[-3:] == ["+2", "2", "ok"]
    assert text.splitlines()[2].split()[-3:] == ["-1", "2", "ok"]
    text, within = soak.table([(constant(3), 10, 13)])
    assert not within
    assert text.splitlines()[1].endswith("GREW")


def test_tolerances_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    chosen = {metric.key: metric.tolerance for metric in resources.metrics(Path(), {"ports": 5})}
    assert chosen["ports"] == 5
    assert chosen["processes"] == 2
    with pytest.raises(ValueError, match="unknown metric sockets: use processes, descriptors"):
        resources.metrics(Path(), {"sockets": 1})
    for arguments in (["--tolerance", "ports"], ["--tolerance", "ports=-1"], ["--tolerance", "sockets=1"]):
        with pytest.raises(SystemExit) as exited:
            soak.main(arguments)
        assert exited.value.code == 2
    assert "METRIC=NUMBER" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        soak.main(["--cycles", "0"])


#: In namespaces of its own (PID, network, mount; a private /dev/shm and temporary directory) the soak
#: measures only itself: others using this machine at the same time cannot change its numbers. The shell
#: stays as the namespace's init, which reaps the servers that the startup scripts leave to it, as init does
#: on a node. The temporary directory is a fresh tmpfs of its own (TMPDIR), not over /tmp: the checkout may
#: be in /tmp.
ISOLATION = ["unshare", "--fork", "--pid", "--mount-proc", "--net", "--mount"]
PRIVATE_NODE = 'ip link set lo up && mount -t tmpfs soak-shm /dev/shm && mount -t tmpfs soak-tmp "$TMPDIR" &&'

#: A soak whose cycles leak a process the cleanup does not know about and a /dev/shm file.
LEAKING_SOAK = """
import subprocess, sys, tempfile
from pathlib import Path
from glidein_triton.local import soak

def leak(prepared):
    subprocess.Popen(["sleep", "300"], cwd=prepared.glidein.root, start_new_session=True)
    Path("/dev/shm/glidein-triton-soak-leak").write_bytes(bytes(4096))

work = Path(tempfile.gettempdir(), "soak")
work.mkdir()
sys.exit(soak.run(work, cycles=1, hooks=soak.CycleHooks(while_ready=leak), warmup=0))
"""


def table_rows(report: str) -> dict[str, list[str]]:
    """measurement -> [before, after, growth, tolerance, verdict], from the soak's table."""
    lines = report.splitlines()
    first = next(number for number, line in enumerate(lines) if line.startswith("measurement "))
    rows = lines[first + 1 : first + 1 + len(resources.metrics(Path()))]
    return {line.rsplit(None, 5)[0].strip(): line.split()[-5:] for line in rows}


def run_isolated(temporary: Path, *command: str) -> subprocess.CompletedProcess[str]:
    probe = subprocess.run([*ISOLATION, "true"], capture_output=True, check=False)
    if shutil.which("ip") is None or probe.returncode != 0:
        pytest.skip("needs unshare (root) and ip to give the soak namespaces of its own")
    script = f"{PRIVATE_NODE} " + " ".join(f"'{word}'" for word in command)
    return subprocess.run(
        [*ISOLATION, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(temporary)},
    )


@pytest.mark.server
def test_soak_cycles_leave_nothing_and_nothing_grows(tmp_path: Path) -> None:
    ran = run_isolated(tmp_path, str(GLIDEIN_TRITON), "soak", "--cycles", "3", "--warmup", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == ["warm-up", "cycle 1/3", "cycle 2/3", "cycle 3/3"]
    assert all(line.endswith("nothing left") for line in lines[:4])
    rows = table_rows(ran.stdout)
    assert len(rows) == 7
    assert all(row[-1] == "ok" for row in rows.values())
    # Alone on its node, the soak's processes, ports and shared memory come back to the same numbers.
    for label in (
        "running processes of user 0",
        "listening TCP ports",
        "files in /dev/shm",
        "KiB in /dev/shm",
    ):
        assert rows[label][0] == rows[label][1], (label, rows[label])
    assert "cycles: 3 measured, 3 ready, 0 left something behind" in ran.stdout
    assert lines[-1] == "soak passed: nothing grew"


@pytest.mark.server
def test_a_leak_fails_the_soak(tmp_path: Path) -> None:
    ran = run_isolated(tmp_path, sys.executable, "-c", LEAKING_SOAK.replace("'", '"'))
    assert ran.returncode == soak.EXIT_GROWTH, ran.stdout + ran.stderr
    report = ran.stdout
    assert "LEFT: process" in report
    assert "still runs: sleep 300" in report
    rows = table_rows(report)
    assert rows["files in /dev/shm"][2:] == ["+1", "0", "GREW"]
    assert rows["KiB in /dev/shm"][2:] == ["+4", "0", "GREW"]
    assert "1 left something behind" in report
    assert report.splitlines()[-1] == "SOAK FAILED"
