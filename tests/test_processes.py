"""Processes read from /proc: a zombie whose threads still run is still there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from glidein_triton.worker import processes

#: The main thread ends with pthread_exit while another thread goes on: the process shows as a zombie
#: (state Z) although it still runs, as tritonserver does for a moment after SIGKILL.
ZOMBIE_LEADER = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(30,)).start()
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


def state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_zombie_leader_with_running_threads_is_alive() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE_LEADER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10
        while state_of(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state_of(child.pid) == "Z"
        assert processes.is_running(child.pid, processes.start_ticks(child.pid))
        assert processes.group_members(child.pid) == [child.pid]
        assert processes.stop_group(child.pid, grace=5.0)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, 9)
        child.wait()
        child.stdout.close()
    assert not processes.is_running(child.pid)
    assert processes.group_members(child.pid) == []


def test_running_and_gone_processes() -> None:
    assert processes.is_running(os.getpid(), processes.start_ticks(os.getpid()))
    assert not processes.is_running(os.getpid(), processes.start_ticks(os.getpid()) + 1)
    child = subprocess.Popen(["true"])
    child.wait()
    assert not processes.is_running(child.pid)
