"""Periodic script: ``glidein_triton_periodic.sh glidein_config <id>``, run by HTCondor's startd cron.

GlideinWMS runs it once at startup like any custom script (``glidein_config <id>``, no
``GLIDEIN_PERIODIC_SCRIPT``): that run reports ``error_gen -ok`` as the startup script does, and exits 0 (the
glidein fails otherwise, and the script is scheduled only then). Then HTCondor's startd cron runs it every
``period`` seconds through script_wrapper.sh (``GLIDEIN_PERIODIC_SCRIPT=true``), which turns the
``Name = value`` lines printed on stdout into machine ad attributes. Each run:

* checks ``/v2/health/ready`` (and ``live``); restarts a crashed or hung server (:mod:`supervisor`);
* reaps models that no live job holds any more (:mod:`reaper`), keeping their statistics;
* restarts an idle server whose resident memory stays high (:meth:`Check.watch_memory`);
* prints ``HasTriton``, ``TritonReady``, ``TritonLoadedModels``, ``TritonInferenceCount``,
  ``TritonAverageQueueMicroseconds``, ``TritonResidentMemoryMB``, ``TritonGPUUtilization`` (with GPUs only)
  and ``TritonRestarts``; a pool server (:mod:`pool_server`) also ``TritonPoolModels``,
  ``TritonPoolQueueTimeMs`` (since the last run), ``TritonPoolAccepting`` and ``TritonPoolDrainTime``.

Health and statistics calls have a timeout of a few seconds, each lock wait LOCK_WAIT (a process that holds
a lock for longer costs this run its reaping and its counters, never its ``TritonReady``); a restart waits at
most supervisor.RESTART_READY_WAIT for readiness, then reloads held models within their load timeout, and
never past the period (GLIDEIN_TRITON_PERIODIC_PERIOD: the startd cron kills a run still going when the
next one is due). A restart holds a lock: a second run that finds it held reports it and leaves the server
alone. It also caps server.log (:func:`log_files.cap`). Restarts and a final give-up are also written to
the glidein's ``exit_message`` file, which glidein_startup.sh prints into the glidein log at exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import (
    accounting,
    failure_messages,
    files,
    glidein_paths,
    log_files,
    logs,
    processes,
    supervisor,
)
from glidein_triton.worker.classad import attribute_line
from glidein_triton.worker.glidein_config import parse_glidein_config
from glidein_triton.worker.model_registry import RESTART_LOCK_FILE, LockTimeoutError, Registry, locked
from glidein_triton.worker.reaper import Reaper
from glidein_triton.worker.state import ServerState
from glidein_triton.worker.triton_api import Server, TritonAPIError, gauge_values

LOG = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
#: The registry lock is held for a read and a rewrite (milliseconds): waiting longer means a stuck holder.
LOCK_WAIT = 2.0
SCRIPT_NAME = "glidein_triton_periodic.sh"
#: Part of the period one run may use: the rest is left for its own start and exit.
PERIOD_SHARE = 0.8
EXIT_MESSAGE_FILE = "exit_message"


def note_exit_message(work_dir: Path, message: str) -> None:
    """A line for the glidein log, printed by glidein_startup.sh when the glidein exits."""
    LOG.warning("%s", message)
    try:
        with (work_dir / EXIT_MESSAGE_FILE).open("a") as stream:
            stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} glidein-triton: {message}\n")
    except OSError as error:
        LOG.error("cannot write %s: %s", work_dir / EXIT_MESSAGE_FILE, error)


class Check:
    """One periodic run for the glidein whose work directory is ``work_dir``."""

    def __init__(
        self,
        work_dir: Path,
        state: ServerState,
        started: float | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.config = config or {}
        #: a pool server (the startup published TRITON_POOL_ROLE=server): its TritonPool* lines too
        self.pool = self.config.get("TRITON_POOL_ROLE", "") == "server"
        begun = time.monotonic() if started is None else started
        self.deadline = begun + state.periodic_period * PERIOD_SHARE
        self.directory = glidein_paths.plugin_dir(work_dir)
        self.state_path = glidein_paths.state_file(work_dir)
        self.state = state
        self.server = Server(state.http_port, state.metrics_port, unix_socket=state.plugin_socket)
        self.registry = Registry(str(self.directory), lock_timeout=LOCK_WAIT)

    def status(self) -> tuple[bool, bool, str]:
        """(ready, answering, final failure or ""), restarting the server when it is down or hung.

        A server that answers ``live`` but not ``ready`` is up (e.g. with strict readiness, while a model
        loads or unloads): it is reported not ready, and never restarted for that.
        """
        state = self.state
        status = self.server.exchange("GET", "/v2/health/ready", timeout=CHECK_TIMEOUT)[0]
        if status and state.plugin_socket and not supervisor.is_alive(state):
            status = 0  # the door is gone: the server answers its socket, but no job can reach it
        ready = status == 200
        if ready or (status and self.server.is_live(CHECK_TIMEOUT)):  # no answer at all: no use asking
            if state.health_misses:
                state.health_misses = 0
                state.save(self.state_path)
            return ready, True, ""
        now = time.time()
        if supervisor.is_alive(state):
            state.health_misses += 1
            state.save(self.state_path)
            if not supervisor.is_hung(state, now):
                LOG.info("tritonserver (pid %d) does not answer (check %d)", state.pid, state.health_misses)
                return False, False, ""
            LOG.warning(
                "tritonserver (pid %d) is hung: %d checks without an answer", state.pid, state.health_misses
            )
        refusal = supervisor.restart_refusal(state, now)
        if refusal:
            if supervisor.gave_up(refusal):
                if state.pid:
                    self.give_up(refusal)
                return False, False, f"server down, not restarted: {refusal}"
            LOG.info("tritonserver is down; %s", refusal)
            return False, False, ""
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(locked(str(self.directory / RESTART_LOCK_FILE), timeout=0))
            except LockTimeoutError:
                LOG.warning("another periodic run is restarting tritonserver: leaving it to that run")
                return False, False, ""
            return self.restart()

    def restart(self) -> tuple[bool, bool, str]:
        """Restart the server (the restart lock held), within what is left of the period."""
        # What another run saved while this one waited for the lock (it may have restarted the server).
        state = ServerState.load(self.state_path) or self.state
        self.state = state
        if supervisor.is_alive(state) and self.server.is_live(CHECK_TIMEOUT):
            return self.server.is_ready(CHECK_TIMEOUT), True, ""
        accounting.Usage(self.registry).close_life()
        within = f" in {state.restart_window:g} s" if state.restart_window else ""
        recent = len(supervisor.recent_restarts(state, time.time()))
        note_exit_message(
            self.work_dir, f"tritonserver was down; restart {recent + 1} of {state.restart_limit}{within}"
        )
        problem = supervisor.restart(state, self.state_path, self.deadline - time.monotonic())
        if problem:
            LOG.error("restart failed: %s", problem)
            return False, False, ""
        self.reload_held()
        return True, True, ""

    def watch_memory(self, resident_mib: int, requests: int) -> None:
        """Restart an idle server whose resident memory stays high (GLIDEIN_TRITON_IDLE_MEMORY_GROWTH).

        Idle: no job holds a model, and no request was served since the previous run (``requests``: those
        of this server life). Requests refused before any model ran (too large, unauthenticated) leave the
        memory they made the server take and are never counted by Triton: this is where they are seen.
        """
        state = self.state
        idle = requests == state.requests_seen and not self.held_models()
        before = (state.memory_high_checks, state.idle_memory_floor, state.requests_seen)
        state.requests_seen = requests
        due = supervisor.memory_restart_due(state, resident_mib, idle)
        if due:
            with contextlib.ExitStack() as held:
                try:
                    held.enter_context(locked(str(self.directory / RESTART_LOCK_FILE), timeout=0))
                except LockTimeoutError:
                    return
                accounting.Usage(self.registry).close_life()
                restarted = failure_messages.IDLE_MEMORY_RESTART.format(
                    resident=resident_mib, floor=state.idle_memory_floor, growth=state.idle_memory_growth
                )
                note_exit_message(self.work_dir, restarted)
                problem = supervisor.restart(
                    state, self.state_path, self.deadline - time.monotonic(), counted=False
                )
                if problem:
                    LOG.error("restart for memory failed: %s", problem)
        elif (state.memory_high_checks, state.idle_memory_floor, state.requests_seen) != before:
            state.save(self.state_path)

    def held_models(self) -> bool:
        """Whether a job holds a model (True when the registry cannot be read now: not idle then)."""
        if not self.registry.exists():
            return False
        try:
            with self.registry.editing() as document:
                models = document.get("models", {})
        except LockTimeoutError:
            return True
        return any(isinstance(entry, dict) and entry.get("holders") for entry in models.values())

    def give_up(self, refusal: str) -> None:
        """Stop what is left (a hung server), note in the glidein log that it stays down, forget its pid."""
        supervisor.stop_leftovers(self.state)
        note_exit_message(self.work_dir, f"tritonserver is down and stays down: {refusal}")
        self.state.pid = self.state.pgid = self.state.start_ticks = 0
        self.state.save(self.state_path)

    def reload_held(self) -> None:
        """After a restart, load again the models live jobs hold (pinned ones come back by themselves)."""
        if not self.registry.exists():
            return
        with self.registry.editing() as document:
            models = document.get("models", {})
        for model, entry in sorted(models.items()):
            left = self.deadline - time.monotonic()
            if entry.get("holders") and left <= 1:
                LOG.warning("no time left in this period to load %s again: the next run reloads it", model)
            elif entry.get("holders"):
                try:
                    self.server.load(model, min(self.state.load_timeout, left))
                except TritonAPIError as error:
                    LOG.error("could not load %s again after the restart: %s", model, error)

    def lines(self) -> list[str]:
        """The startd cron lines of this run."""
        if self.state.log_path and log_files.cap(Path(self.state.log_path)):
            LOG.warning("%s was over %d bytes: cut to its end", self.state.log_path, log_files.SIZE_LIMIT)
        ready, answering, failure = self.status()
        tail = [
            attribute_line("TritonRestarts", self.state.restarts),
            attribute_line("TritonFailure", failure),
        ]
        if not answering:
            return [
                attribute_line("HasTriton", not failure),
                attribute_line("TritonReady", False),
                attribute_line("TritonLoadedModels", ""),
                *self.pool_lines(False, [], {}),
                *tail,
            ]
        opened = processes.private_shared_memory()
        if opened:
            LOG.warning("shared memory readable by others made private: %s", ", ".join(map(str, opened)))
        try:
            Reaper(
                self.registry,
                self.server,
                str(glidein_paths.execute_dir(self.work_dir)),
                self.state.pinned_models,
            ).reap()
        except LockTimeoutError as error:
            LOG.warning("no reaping in this run: %s", error)
        try:
            current = accounting.model_totals(self.server.model_statistics(timeout=CHECK_TIMEOUT))
        except TritonAPIError as error:
            LOG.warning("no statistics: %s", error)
            current = {}
        usage = accounting.Usage(self.registry)
        totals = accounting.everything(current)
        if self.registry.exists():
            try:
                usage.record_seen(current)
                totals = accounting.everything(usage.totals(current))
            except LockTimeoutError as error:
                LOG.warning("counters of this server life only: %s", error)
        queued = totals["queue_ns"] / 1000 / totals["success_count"] if totals["success_count"] else 0.0
        resident = 0
        if self.state.pid:
            resident = processes.resident_kib(processes.descendants(self.state.pid)) // 1024
            served = accounting.everything(current)
            self.watch_memory(resident, served["success_count"] + served["failure_count"])
        lines = [
            attribute_line("HasTriton", True),
            attribute_line("TritonReady", ready),
            attribute_line("TritonLoadedModels", ",".join(sorted(current))),
            attribute_line("TritonInferenceCount", totals["inference_count"]),
            attribute_line("TritonAverageQueueMicroseconds", round(queued, 1)),
            attribute_line("TritonResidentMemoryMB", resident),
        ]
        if self.state.gpus:
            utilization = gauge_values(self.server.metrics(CHECK_TIMEOUT), "nv_gpu_utilization")
            if utilization:
                lines.append(
                    attribute_line("TritonGPUUtilization", round(sum(utilization) / len(utilization), 3))
                )
        return [*lines, *self.pool_lines(ready, sorted(current), accounting.everything(current)), *tail]

    def pool_lines(self, ready: bool, models: Sequence[str], served: Mapping[str, int]) -> list[str]:
        """A pool server's TritonPool* refresh (none for other servers); ``served``: this server life's
        totals (the queue time is the mean since the last run)."""
        if not self.pool:
            return []
        from glidein_triton.worker import pool_server  # noqa: PLC0415 (pool servers only)

        return pool_server.periodic_lines(
            self.work_dir,
            self.config,
            ready,
            models,
            int(served.get("queue_ns", 0)),
            int(served.get("success_count", 0)),
            time.time(),
        )


def run(config_path: str, started: float | None = None) -> list[str]:
    """The lines to print for the glidein of ``config_path``."""
    work_dir = Path(config_path).resolve().parent
    state = ServerState.load(glidein_paths.state_file(work_dir))
    if state is None:
        return [attribute_line("TritonReady", False)]
    try:
        text = Path(config_path).read_bytes().decode("utf-8", errors="surrogateescape")
        config = parse_glidein_config(text)
    except OSError as error:
        LOG.warning("cannot read %s: %s", config_path, error)
        config = {}
    return Check(work_dir, state, started, config).lines()


def report_first_run(config_path: str, lines: Sequence[str]) -> None:
    """glidein_startup.sh's startup-time run: report ``-ok`` through error_gen, as custom scripts do."""
    # Imported here: error_gen brings subprocess, which the cron runs (every period) do not need.
    from glidein_triton.worker.error_gen import Reporter  # noqa: PLC0415

    try:
        text = Path(config_path).read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as error:
        LOG.error("cannot read %s to find error_gen: %s", config_path, error)
        return
    ready = next((line.split(" = ", 1)[1] for line in lines if line.startswith("TritonReady = ")), "False")
    Reporter.from_config(parse_glidein_config(text), SCRIPT_NAME).ok([("TritonReady", ready)])


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    files.private_umask()  # the plugin's files 0600/0700 whatever umask the glidein has
    logs.configure("glidein-triton-periodic")
    started = time.monotonic()
    config_path = arguments[0] if arguments else "glidein_config"
    try:
        lines = run(config_path, started)
    except Exception:  # a bug must neither fail the glidein (first run) nor stop the cron
        LOG.exception("periodic check failed")
        lines = [attribute_line("TritonReady", False)]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    if os.environ.get("GLIDEIN_PERIODIC_SCRIPT") != "true":
        report_first_run(config_path, lines)
    LOG.debug("periodic check took %.1f ms", (time.monotonic() - started) * 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
