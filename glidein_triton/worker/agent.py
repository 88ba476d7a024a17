"""The agent: the host-side process that lives as long as the glidein and loads the jobs' models.

The startup script starts it once the server is ready, in a session of its own, logging into the plugin's
directory (never ``<work dir>/log``: condor_startup.sh fails the glidein when it finds ``log`` without
``execute``). It keeps the state in memory (see below). Its poll loop, every ``POLL`` seconds:

* finds new job sandboxes under HTCondor's execute directory (the scratch directory of each
  ``<work dir>/execute/dir_*``, nested or flat: :mod:`sandboxes`, once its job ad ``.job.ad`` is complete)
  and serves each in a thread of its own (:class:`job_loader.JobLoader`: the models the job ad asks for,
  the answer), so jobs under any wrapper and in any container get them, and no job loads a model itself;
* every ``LOG_CHECK`` seconds, cuts server.log to its end once it is over its cap (:func:`log_files.cap`):
  a flood of connections makes the server write megabytes a second, which a cap once a period lets fill
  the disk;
* every ``watch_period`` seconds, when it follows glidein_startup.sh (``GLIDEIN_STARTUP_PID``), checks that
  it still runs; after ``MISSES`` misses in a row it stops the server with the state it keeps in memory
  (the glidein was killed, or ended with its cleanup disabled) and ends.

Batch systems often delete the job's scratch directory, and the glidein work dir in it, as they kill the
glidein: so the agent keeps in memory what it needs to stop the server, read while the directory is there
(the state, re-read at each check as restarts change it; the instance's own process). With the directory it
runs the whole cleanup; without, it stops the server from its copy (SIGTERM, grace, SIGKILL, the teardown
argv), then ends the instance's process if the teardown could not find it (its records were in the deleted
directory). It runs from ``/``, so that no command starts in a deleted directory.

It ends on SIGTERM (the glidein's cleanup sends it), or when the state file is gone and the server with it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import (
    cleanup,
    files,
    glidein_paths,
    log_files,
    logs,
    pool_discovery,
    processes,
    sandboxes,
    server,
)
from glidein_triton.worker.commands import run_quietly
from glidein_triton.worker.errors import CorruptionError, TritonSetupError
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.job_loader import JobLoader
from glidein_triton.worker.job_policy import Policy
from glidein_triton.worker.sandbox_protocol import JOB_AD_FILE
from glidein_triton.worker.state import ServerState
from glidein_triton.worker.triton_api import Server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from glidein_triton.worker.pool_enrolment import EnrolmentService

LOG = logging.getLogger(__name__)

MISSES = 3
#: How often the execute directory is listed: a job's pre-job waits for the agent's answer.
POLL = 0.02
#: How often the end of the glidein's cleanup is checked for when the glidein itself is not followed.
UNFOLLOWED_CHECK = 5.0
#: How often server.log's size is checked (a stat): at 20 MB/s it passes its cap by at most that much.
LOG_CHECK = 1.0
INSTANCE_STOP = ("instance", "stop")


class Agent:
    """One glidein's agent, with the server's state in memory."""

    def __init__(self, work_dir: Path, state: ServerState) -> None:
        self.work_dir = work_dir
        self.state = state
        directory = glidein_paths.plugin_dir(work_dir)
        self.state_path = glidein_paths.state_file(work_dir)
        self.execute_dir = glidein_paths.execute_dir(work_dir)
        api = Server(state.http_port, unix_socket=state.plugin_socket)
        policy = Policy(state.job_repositories, state.code_repositories, state.job_model_size_limit << 20)
        self.loader = JobLoader(
            str(directory),
            api,
            policy,
            state.model_repository,
            state.load_timeout,
            cvmfs_mount=state.cvmfs_mount_dir,
        )
        self.seen: set[str] = set()
        self.pool = client_pool(work_dir, state, os.environ)
        #: The container instance's own process (pid, start ticks), for the server it was looked up for.
        self.instance = (0, 0)
        self.instance_of = (0, 0)

    def new_sandboxes(self) -> list[str]:
        """Job scratch directories with a job ad not seen before (and forget those that are gone)."""
        scratch = dict(sandboxes.scratch_dirs(str(self.execute_dir)))
        self.seen &= set(scratch.values())
        new = []
        for directory in sorted(set(scratch.values()) - self.seen):
            if ad_complete(Path(directory) / JOB_AD_FILE):
                self.seen.add(directory)
                new.append(directory)
        return new

    def serve(self, sandbox: str) -> None:
        if self.pool is not None:  # before the answer: the job starts once the pre-job has it
            try:
                self.pool.write_for(sandbox)
            except OSError as error:  # the job then runs without the pool, with its models
                LOG.warning("cannot write the pool file of the job in %s: %s", sandbox, error)
        try:
            self.loader.serve(sandbox)
        except (
            OSError
        ) as error:  # the sandbox went away, or a job made it unusable: only that job is affected
            LOG.warning("cannot serve the job in %s: %s", sandbox, error)

    def finished(self) -> bool:
        """The glidein's cleanup ran: no state file, and no server."""
        return not self.state_path.exists() and not processes.is_running(
            self.state.pid, self.state.start_ticks
        )

    def remember(self, environment: Mapping[str, str]) -> None:
        """Re-read the state while the work dir is there (restarts change it), and look up the instance's
        own process when the server is not the one it was looked up for."""
        self.state = ServerState.load(self.state_path) or self.state
        if (self.state.pid, self.state.start_ticks) != self.instance_of:
            self.instance_of = (self.state.pid, self.state.start_ticks)
            self.instance = instance_process(self.state, environment)

    def stop(self, environment: Mapping[str, str]) -> None:
        """Stop the server: the whole cleanup with the work dir, else from the copy in memory."""
        if self.state_path.parent.is_dir():
            # The file is newer after a restart by the periodic script; a job may have removed it.
            cleanup.clean(self.work_dir, environment, ServerState.load(self.state_path) or self.state)
        else:
            LOG.warning("its work dir %s is gone: stopping the server recorded in memory", self.work_dir)
            stop_from_memory(self.state, self.instance, environment)

    def cap_log(self) -> None:
        """Cut server.log to its end when it is over log_files.SIZE_LIMIT."""
        if self.state.log_path and log_files.cap(Path(self.state.log_path)):
            LOG.warning("%s was over %d bytes: cut to its end", self.state.log_path, log_files.SIZE_LIMIT)

    def run(self, glidein_pid: int, ticks: int, watch_period: float, environment: Mapping[str, str]) -> bool:
        """The loop; True when it stopped the server because the glidein is gone."""
        misses = 0
        self.remember(environment)
        LOG.info(
            "following the glidein (pid %d) every %g s; server pid %d, instance pid %d",
            glidein_pid,
            watch_period,
            self.state.pid,
            self.instance[0],
        )
        watch_period = watch_period if glidein_pid and watch_period > 0 else UNFOLLOWED_CHECK
        next_watch = time.monotonic() + watch_period
        next_log_check = time.monotonic()
        while True:
            if self.pool is not None:
                self.pool.start_refresh(time.monotonic())
            for sandbox in self.new_sandboxes():
                threading.Thread(target=self.serve, args=(sandbox,), daemon=True).start()
            if time.monotonic() >= next_log_check:
                next_log_check = time.monotonic() + LOG_CHECK
                self.cap_log()
            if time.monotonic() >= next_watch:
                next_watch += watch_period
                if self.finished():
                    return False
                self.remember(environment)
                misses = 0 if not glidein_pid or processes.is_running(glidein_pid, ticks) else misses + 1
                if misses >= MISSES:
                    LOG.warning(
                        "the glidein (pid %d) is gone without its cleanup: stopping the Triton server",
                        glidein_pid,
                    )
                    self.stop(environment)
                    return True
            time.sleep(POLL)


def client_pool(
    work_dir: Path, state: ServerState, environment: Mapping[str, str]
) -> pool_discovery.ClientPool | None:
    """The pool the glidein is a client of (``GLIDEIN_TRITON_POOL = client`` in its glidein_config), else
    None; the glidein's own server is the jobs' local fall-back."""
    try:
        config = GlideinConfig.read(work_dir / "glidein_config")
    except CorruptionError:
        return None
    if pool_discovery.pool_role(config) != pool_discovery.CLIENT_ROLE:
        return None
    published = config.get("TRITON_GRPC_URL", "").strip()  # what the glidein's own jobs are given
    local = published or (f"127.0.0.1:{state.grpc_port}" if state.grpc_port else "")
    return pool_discovery.ClientPool(work_dir, config, environment, local)


def instance_process(state: ServerState, environment: Mapping[str, str]) -> tuple[int, int]:
    """(pid, start ticks) of the container instance's own process, from ``instance list --json`` run like
    the recorded ``instance stop``; (0, 0) without an instance or an answer."""
    stops = [argv for argv in state.teardown if tuple(argv[-3:-1]) == INSTANCE_STOP]
    if not state.instance or not stops:
        return 0, 0
    argv = [*stops[0][:-3], "instance", "list", "--json", state.instance]
    try:
        listed = run_quietly(argv, 60, environment)
        rows = json.loads(listed.stdout).get("instances", [])
        pid = int(next(row["pid"] for row in rows if row.get("instance") == state.instance))
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError, StopIteration) as error:
        LOG.warning("cannot find the process of instance %s: %r", state.instance, error)
        return 0, 0
    return pid, processes.start_ticks(pid)


def stop_from_memory(state: ServerState, instance: tuple[int, int], environment: Mapping[str, str]) -> None:
    """Stop the server from the agent's copy of the state (the work dir is gone)."""
    if not processes.is_running(state.pid, state.start_ticks):
        state.pid = state.pgid = 0  # gone already: its process group id may belong to another by now
    for problem in server.stop(state, environment):
        LOG.warning("%s", problem)
    pid, ticks = instance
    if pid and processes.is_running(pid, ticks):
        LOG.warning("instance %s (pid %d) still runs: stopping its process", state.instance, pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + max(state.stop_grace, 1.0)
        while processes.is_running(pid, ticks) and time.monotonic() < deadline:
            time.sleep(0.05)
        if processes.is_running(pid, ticks):
            os.kill(pid, signal.SIGKILL)


def ad_complete(path: Path) -> bool:
    """Whether the starter has written the job ad: not empty and ending with a newline (it is written in
    buffered pieces, which end mid-line)."""
    try:
        with path.open("rb") as ad:
            ad.seek(-1, os.SEEK_END)
            return ad.read(1) == b"\n"
    except OSError:  # missing, or empty (a seek before the start)
        return False


def start_enrolment(work_dir: Path, environment: Mapping[str, str]) -> EnrolmentService | None:
    """A pool server glidein's enrolment service (:mod:`pool_enrolment`), serving in a thread of the agent;
    None for any other glidein, or when it cannot be set up (logged: the server still serves its own jobs
    and the clients that hold a certificate)."""
    try:
        config = GlideinConfig.read(work_dir / "glidein_config")
    except CorruptionError as error:  # no pool mode can be read: none is served
        LOG.debug("no pool enrolment: %s", error)
        return None
    if config.get("GLIDEIN_TRITON_POOL", "").strip().lower() != "server":
        return None
    from functools import partial  # noqa: PLC0415 (pool servers only, as ssl and http.server)

    from glidein_triton.worker import pool_enrolment, pool_files  # noqa: PLC0415

    directory = pool_files.pool_dir(work_dir)
    try:
        sign = partial(pool_files.sign_client_csr, directory=directory)
        service = pool_enrolment.service_for(work_dir, config, environment, sign)
    except (OSError, ValueError, TritonSetupError) as error:  # ssl.SSLError is an OSError
        LOG.error("pool server: no enrolment service: %s", error)
        return None
    if service is not None:
        pool_enrolment.start(service)
        LOG.info("pool enrolment served on %s:%d", *service.server_address[:2])
    return service


def main(argv: Sequence[str] | None = None) -> int:
    work_dir, pid, ticks, period = list(sys.argv[1:] if argv is None else argv)
    files.private_umask()  # the plugin's files 0600/0700 whatever umask the glidein has
    logs.configure("glidein-triton-agent")
    os.chdir("/")  # the work dir may be deleted while the agent runs: commands must not start in it
    state = ServerState.load(glidein_paths.state_file(Path(work_dir)))
    if state is None:
        LOG.error("no server state in %s: nothing to serve", glidein_paths.plugin_dir(Path(work_dir)))
        return 1
    start_enrolment(Path(work_dir), os.environ)
    Agent(Path(work_dir), state).run(int(pid), int(ticks), float(period), os.environ)
    return 0
