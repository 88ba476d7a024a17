"""Startup script: ``glidein_triton_setup.sh glidein_config <id>`` runs ``python -m ...startup``.

Reads the settings, detects GPUs, starts tritonserver (process or container instance), waits until it is
ready, publishes its endpoint to the machine ad and the job environment, installs the cleanup script and
reports through error_gen. A failure is fatal to the glidein only when GLIDEIN_TRITON_REQUIRED is true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from glidein_triton.worker import (
    access,
    agent_launch,
    classad,
    cvmfs,
    failure_messages,
    files,
    glidein_paths,
    gpu_ownership,
    gpu_selection,
    images,
    install,
    logs,
    pool_server,
    processes,
    publish,
    reservation,
    runtime,
    server,
    server_report,
    startup_guard,
    supervisor,
    triton_release,
)
from glidein_triton.worker.accounting import accounting_path
from glidein_triton.worker.error_gen import Reporter
from glidein_triton.worker.errors import (
    ConfigError,
    CorruptionError,
    OptionRefusedError,
    PortInUseError,
    ServerStartError,
    TritonSetupError,
    VOConfigError,
    WorkDirectoryError,
)
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.glidein_config import publish as publish_config
from glidein_triton.worker.gpu_selection import Selection
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.ports import LOOPBACK, Ports, allocate
from glidein_triton.worker.settings import Settings, memory_limit, required_flag, unknown_settings_text
from glidein_triton.worker.state import (
    EMPTY_REPOSITORY,
    JOB_REPOSITORY,
    LOG_FILE_NAME,
    LaunchPlan,
    ServerState,
)
from glidein_triton.worker.triton_api import Server, TritonAPIError

LOG = logging.getLogger(__name__)

SCRIPT_NAME = "glidein_triton_setup.sh"
CLEANUP_SCRIPT = "glidein_triton_cleanup.sh"
#: Its name in .gwms.d/exec/cleanup, which runs in lexicographic order: before cvmfsexec's cvmfs_umount.sh
#: (the Python, the container runtime or the image may be on /cvmfs), in the C locale and in others.
INSTALLED_CLEANUP_SCRIPT = "00_glidein_triton_cleanup.sh"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"
PORT_ATTEMPTS = 3
ACCOUNTING_KEY = "GLIDEIN_TRITON_ACCOUNTING_FILE"
#: The error_gen metric that names misspelled settings.
IGNORED_SETTINGS_METRIC = "TritonIgnoredSettings"


@dataclass(frozen=True)
class RunningServer:
    state: ServerState
    gpus: list[GPU]
    version: str
    model_repository: str
    access: access.Access
    selection: Selection = dataclasses.field(default_factory=Selection)

    def endpoint(self) -> publish.Endpoint:
        return publish.Endpoint(
            grpc_host=self.access.grpc_address,
            grpc_port=self.state.grpc_port,
            http_port=self.state.http_port,
            metrics_port=self.state.metrics_port,
            tls=self.access.tls,
            remote=self.access.grpc_address != LOOPBACK,
        )


class Interrupted(BaseException):
    """The startup script got SIGTERM (e.g. the glidein is being killed) while it was starting the server."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # A second SIGTERM must not cut short the stop of the server and the report that this one starts.
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(f"signal {signum}")


def install_cleanup_script(work_dir: Path) -> Path:
    """Copy the cleanup script into ``.gwms.d/exec/cleanup``, which glidein_startup.sh runs at exit."""
    source = SCRIPTS_DIR / CLEANUP_SCRIPT
    if not source.is_file():
        raise CorruptionError(failure_messages.CLEANUP_SCRIPT_MISSING.format(path=source))
    target_dir = glidein_paths.phase_dir(work_dir, "cleanup")
    target = target_dir / INSTALLED_CLEANUP_SCRIPT
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o755)
    except OSError as error:
        message = failure_messages.CLEANUP_NOT_INSTALLED.format(directory=target_dir, error=error)
        raise WorkDirectoryError(message) from error
    return target


def model_repository(settings: Settings, directory: Path) -> str:
    """The configured repository, or an empty one in the work directory for models loaded later."""
    if not settings.model_repository:
        empty = directory / EMPTY_REPOSITORY
        files.private_directory(empty)
        return str(empty)
    if not Path(settings.model_repository).is_dir():
        raise VOConfigError(
            failure_messages.REPOSITORY_NOT_A_DIRECTORY.format(path=settings.model_repository)
        )
    return settings.model_repository


def plan_for(
    settings: Settings,
    config: GlideinConfig,
    environment: Mapping[str, str],
    repository: str,
    ports: Ports,
    devices: Sequence[GPU],
    server_access: access.Access,
    job_repository: str = "",
    same_path_binds: Sequence[str] = (),
    cuda_visible_devices: str = "",
    probed: triton_release.TritonRelease | None = None,
) -> LaunchPlan:
    """The launch plan, with the options the server's release accepts; ``job_repository`` is served too (in a
    container, found via ``same_path_binds``).

    A binary (process runtime) gets the options of current releases unchecked until ``probed`` says what
    it accepts: an older release refuses one at once (:class:`OptionRefusedError`), and is then probed and
    launched again (``_launch_until_ready``). That saves every other start a ``tritonserver --help``.
    """
    search_path = environment.get("PATH")
    more_repositories = [job_repository] if job_repository else []
    chosen = runtime.choose_runtime(settings.runtime, settings.image, config, search_path)
    data_limit = memory_limit(settings.server_memory_limit, bool(devices), reservation.glidein_memory(config))
    LOG.info(
        "server data limit (GLIDEIN_TRITON_SERVER_MEMORY_LIMIT): %s",
        f"{data_limit} MiB" if data_limit else "none",
    )
    options = [
        *install.default_server_args(settings.server_args, settings.models),
        *settings.server_args,
        *server_access.options,
    ]
    pool = pool_server.is_pool_server(settings)
    control_mode = pool_server.CONTROL_MODE if pool else "explicit"
    if pool:
        options += pool_server.triton_options(settings)
    if chosen == "process":
        if probed is not None:
            LOG.info("%s", probed.describe())
        return runtime.process_plan(
            settings.server_binary,
            repository,
            ports,
            settings.models,
            options,
            devices,
            search_path,
            server_access.grpc_address,
            more_repositories,
            release=probed,
            operator_options=settings.server_args,
            cuda_visible_devices=cuda_visible_devices,
            memory_limit=data_limit,
            control_mode=control_mode,
        )
    runtime.check_image(settings.image)
    if images.is_remote(settings.image):
        LOG.warning("%s", images.remote_warning(settings.image))
    release = triton_release.from_image(settings.image)
    LOG.info("%s", release.describe())
    executable = runtime.find_container_runtime(chosen, config, search_path)
    config_dir = glidein_paths.plugin_dir(config.work_dir) / runtime.CONFIG_DIR_NAME
    door_dir = glidein_paths.plugin_dir(config.work_dir) / runtime.DOOR_DIR_NAME
    for directory in (config_dir, door_dir):
        with writing_in(directory):
            files.private_directory(directory)
    return runtime.container_plan(
        chosen,
        executable,
        settings.image,
        repository,
        ports,
        settings.models,
        options,
        devices,
        runtime.instance_name(),
        server_access.grpc_address,
        more_repositories,
        [*same_path_binds, *server_access.files],
        release=release,
        operator_options=settings.server_args,
        cuda_visible_devices=cuda_visible_devices,
        config_dir=str(config_dir),
        door_dir=str(door_dir),
        memory_limit=data_limit,
        cvmfs_mount=cvmfs.mount_dir(config),
        control_mode=control_mode,
    )


def start_server(
    config: GlideinConfig,
    settings: Settings,
    environment: Mapping[str, str],
    announce: Callable[[RunningServer], None] = lambda _running: None,
) -> RunningServer:
    """Start the server and wait for it; on any failure, stop what was started and re-raise.

    ``announce`` is called right after the launch, while the server loads its models. In ``auto`` mode a
    GPU launch that fails for a GPU reason is followed by a CPU launch. A failure leaves no state file
    behind.
    """
    directory = glidein_paths.plugin_dir(config.work_dir)
    selection = gpu_selection.choose(settings, config, environment)
    if settings.gpu_mode == "gpu" and not selection.devices:
        raise TritonSetupError(failure_messages.NO_USABLE_GPU.format(reason=selection.reason or "none found"))
    try:
        with writing_in(directory):
            files.private_directory(directory)
            repository = model_repository(settings, directory)
            if pool_server.is_pool_server(settings):
                warn_unbounded_queues(repository)
            server_access = access.prepare(settings)
            job_repository = directory / JOB_REPOSITORY
            files.private_directory(job_repository)
        launch = (config, environment, announce, repository, server_access, str(job_repository))
        try:
            return _launch_until_ready(settings, selection, *launch)
        except ServerStartError as error:
            reason = server_report.gpu_failure(server_report.read_log(directory / LOG_FILE_NAME))
            if not selection.devices or not reason:
                raise
            if settings.gpu_mode != "auto":
                message = failure_messages.FAILED_ON_GPUS.format(line=reason)
                raise ServerStartError(message, evidence=error.evidence) from error
            LOG.warning("the server failed on its GPUs (%s): starting it on the CPU", reason)
            LOG.info("the GPU launch's failure: %s", error.detail())
            fallback = Selection(
                idle=len(selection.devices) + selection.idle, reason=f"the GPU launch failed: {reason}"
            )
            return _launch_until_ready(cpu_settings(settings), fallback, *launch)
    except BaseException:
        with contextlib.suppress(OSError):  # a read-only directory cannot have it either
            glidein_paths.state_file(config.work_dir).unlink(missing_ok=True)
        raise


def warn_unbounded_queues(repository: str) -> None:
    """A model without ``max_queue_size`` makes a pool server's clients wait on a full queue rather than go
    elsewhere: say so."""
    unlimited = pool_server.models_without_queue_limit(repository)
    if unlimited:
        LOG.warning(
            "pool server: models without max_queue_size in their config.pbtxt (a full queue makes clients "
            "wait instead of answering UNAVAILABLE, so they cannot go elsewhere): %s",
            ", ".join(unlimited),
        )


def cpu_settings(settings: Settings) -> Settings:
    """The settings of the CPU server after a failed GPU launch: ``--exit-on-error=false`` whatever the
    operator set, so that models that need a GPU are reported instead of stopping the server."""
    kept = [word for word in settings.server_args if word.split("=", 1)[0] != "--exit-on-error"]
    return dataclasses.replace(settings, server_args=(*kept, install.NO_EXIT_ON_ERROR))


@contextlib.contextmanager
def writing_in(directory: Path) -> Iterator[None]:
    """A failed write of the plugin's files (read-only, full, over quota) is a worker node failure."""
    try:
        yield
    except OSError as error:
        message = failure_messages.FILES_NOT_WRITABLE.format(directory=directory, error=error)
        raise WorkDirectoryError(message) from error


def _launch_until_ready(
    settings: Settings,
    selection: Selection,
    config: GlideinConfig,
    environment: Mapping[str, str],
    announce: Callable[[RunningServer], None],
    repository: str,
    server_access: access.Access,
    job_repository: str,
) -> RunningServer:
    """Launch and wait, with new ports after a clash (when they are chosen here); stop it on failure."""
    devices = selection.devices
    directory = glidein_paths.plugin_dir(config.work_dir)
    mount = cvmfs.mount_dir(config)
    roots = supervisor.same_path_roots(config.work_dir, mount)
    requested = Ports(settings.http_port, settings.grpc_port, settings.metrics_port)
    state_path = glidein_paths.state_file(config.work_dir)
    with writing_in(directory):
        environment = {**environment, **images.conversion_environment(config, environment)}
    attempt = 0
    probed: triton_release.TritonRelease | None = None
    while True:
        attempt += 1
        ports = allocate(requested)
        plan = plan_for(
            settings,
            config,
            environment,
            repository,
            ports,
            devices,
            server_access,
            job_repository,
            roots,
            selection.cuda_visible_devices,
            probed,
        )
        if not plan.metrics:  # off by the operator's choice (GLIDEIN_TRITON_METRICS) or the release
            ports = Ports(ports.http, ports.grpc, 0)
        state = ServerState.from_plan(
            plan,
            http_port=ports.http,
            grpc_port=ports.grpc,
            metrics_port=ports.metrics,
            stop_grace=settings.stop_grace,
        )
        try:
            with writing_in(directory):
                state.save(state_path)  # before anything starts: cleanup finds the instance to stop
                server.run_prepare(plan, environment, settings.instance_start_timeout)
                state = server.launch(
                    plan, directory / LOG_FILE_NAME, environment, settings.stop_grace, processes.new_tag()
                )
                state.http_port, state.grpc_port, state.metrics_port = ports.http, ports.grpc, ports.metrics
                supervisor.record_launch(state, plan, environment, settings, devices, repository, mount)
                state.save(state_path)  # before the wait: cleanup finds the server if this script is killed
                announce(RunningServer(state, devices, "", repository, server_access, selection))
                server.wait_ready(state, settings.ready_timeout)
                members = processes.group_members(state.pgid)
                state.shared_memory = sorted(str(path) for path in processes.shared_memory_files(members))
                processes.make_private(state.shared_memory)
                state.idle_memory_floor = processes.resident_kib(members) // 1024  # ready, no job yet
                state.save(state_path)
        except OptionRefusedError as refused:
            server.stop(state, environment)
            probed = release_after_refusal(refused, plan, probed, environment)
            continue
        except PortInUseError:
            server.stop(state, environment)
            if 0 not in (requested.http, requested.grpc, requested.metrics) or attempt >= PORT_ATTEMPTS:
                raise
            LOG.warning("ports %s were taken before tritonserver bound them; trying new ones", ports)
            continue
        except BaseException:
            server.stop(state, environment)
            raise
        server_api = Server(state.http_port, unix_socket=state.plugin_socket)
        version = str(server_api.metadata().get("version", "unknown"))
        LOG.info("tritonserver %s ready in %.2f s", version, state.ready_at - state.started_at)
        return RunningServer(state, devices, version, repository, server_access, selection)


def release_after_refusal(
    refused: OptionRefusedError,
    plan: LaunchPlan,
    probed: triton_release.TritonRelease | None,
    environment: Mapping[str, str],
) -> triton_release.TritonRelease:
    """What the binary that refused an option accepts (``--help``), to launch it again; re-raises the
    refusal when the release was already probed, cannot be, or is a container's."""
    if plan.runtime != "process" or probed is not None:
        raise refused
    release = triton_release.from_help(plan.server[:1], dict(environment))
    if not release.known:
        raise refused
    LOG.info("the server refused %s: launching it again with the options it lists", refused.option)
    return release


def start_agent(
    config: GlideinConfig, period: float, state: ServerState, environment: Mapping[str, str]
) -> None:
    """Start the agent, following glidein_startup.sh's process unless the period is 0 or it is not there,
    and record it for the cleanup to stop."""
    configured = config.get("GLIDEIN_STARTUP_PID", "").strip()
    glidein_pid = int(configured) if configured.isdigit() else 0
    if period > 0 and glidein_pid and not processes.is_running(glidein_pid):
        # glidein_startup.sh was killed while this script ran (it traps signals only once condor_startup.sh
        # runs; a batch system may kill it alone): no cleanup will run, and no agent would follow it.
        from glidein_triton.worker import cleanup  # noqa: PLC0415 (only this rare case needs it)

        problems = cleanup.clean(config.work_dir, environment, state)
        raise ServerStartError(
            f"the glidein (GLIDEIN_STARTUP_PID {glidein_pid}) ended during the startup: the server was "
            f"stopped{': ' + '; '.join(problems) if problems else ''}"
        )
    if period <= 0 or not glidein_pid:
        LOG.info(
            "the agent does not follow the glidein (GLIDEIN_TRITON_WATCHDOG_PERIOD=%g, "
            "GLIDEIN_STARTUP_PID=%r)",
            period,
            configured,
        )
        glidein_pid = 0
    with writing_in(glidein_paths.plugin_dir(config.work_dir)):
        state.agent_pid, state.agent_ticks = agent_launch.spawn(
            config.work_dir, glidein_pid, period, environment
        )
        state.save(glidein_paths.state_file(config.work_dir))
    LOG.info(
        "agent %d serves the jobs; follows the glidein pid %s every %g s",
        state.agent_pid,
        glidein_pid,
        period,
    )


@dataclass(frozen=True)
class ServerReport:
    """What the ready server reports about its GPUs and models."""

    used: list[GPU]
    fallback: str
    failed_models: list[tuple[str, str]]

    def values(self, running: RunningServer, config: Mapping[str, str]) -> list[tuple[str, str]]:
        """glidein_config values: the report, and the startd's GPUs taken when the server uses them."""
        names = [name for name, _reason in self.failed_models]
        idle = len(running.gpus) - len(self.used) + running.selection.idle
        return [
            *publish.server_report_values(self.used, idle, self.fallback, names),
            *gpu_ownership.startd_values(config, len(self.used)),
        ]


def report_server(running: RunningServer, settings: Settings) -> ServerReport:
    """The GPUs the server initialised (from its log) and the models that failed to load (from its index)."""
    given = running.gpus
    used = given
    if given and not any(word.startswith("--cuda-memory-pool-byte-size") for word in settings.server_args):
        numbers = server_report.initialised_gpus(server_report.read_log(running.state.log_path))
        used = [given[number] for number in numbers if number < len(given)]
    fallback = running.selection.reason
    if given and not used:
        fallback = (
            f"tritonserver initialised none of the {len(given)} GPUs it was given (no 'CUDA memory pool is "
            "created on device' in its log)"
        )
    try:
        index = Server(running.state.http_port, unix_socket=running.state.plugin_socket).index()
    except TritonAPIError as error:
        LOG.warning("cannot read the model repository index: %s", error)
        index = []
    failed = server_report.failed_models(index)
    for name, reason in failed:
        LOG.warning("model %s did not load: %s", name, reason)
    if fallback:
        LOG.warning("the server runs without GPUs: %s", fallback)
    return ServerReport(used, fallback, failed)


def announced_values(config: GlideinConfig, launched: RunningServer) -> list[tuple[str, str]]:
    """What is published while the server loads: its endpoint with HasTriton still False, the report of a
    server that uses the GPUs it was given, and where the hooks keep their accounts."""
    # The repository as on any node (/cvmfs/...), which jobs' Requirements can name, not cvmfsexec's mount.
    repository = cvmfs.as_written(launched.model_repository, cvmfs.mount_dir(config))
    values = publish.server_values(launched.endpoint(), launched.gpus, launched.state.runtime, repository)
    return [*values, (ACCOUNTING_KEY, str(accounting_path(config.work_dir)))]


def pool_client_values(config: GlideinConfig) -> list[tuple[str, str]]:
    """A pool client glidein's key fingerprint (TritonPoolClientKey); nothing for other glideins."""
    if config.get("GLIDEIN_TRITON_POOL", "").strip().lower() != "client":
        return []
    from glidein_triton.worker import pool_enrolment  # noqa: PLC0415 (ssl and http.server: pool clients only)

    return pool_enrolment.client_values(config.work_dir, config)


def announce(config: GlideinConfig, launched: RunningServer, settings: Settings) -> None:
    """While the server loads: install the pre-job hook, and publish its announced values, the server's
    share of the slot (reserved from the startd) and every condor_vars line."""
    install.install_prejob(config.work_dir)
    share = reservation.reserve(
        settings.reserved_cpus,
        settings.reserved_memory,
        bool(launched.gpus),
        config,
        reservation.glidein_memory(config),
    )
    for note in share.notes:
        LOG.warning("%s", note)
    LOG.info("reserved from the startd for the server: %d CPUs, %d MiB", share.cpus, share.memory)
    values = [*announced_values(config, launched), *share.values(), *pool_client_values(config)]
    if pool_server.is_pool_server(settings):
        from glidein_triton.worker import pool_enrolment  # noqa: PLC0415 (ssl and http.server: pool only)

        endpoint = launched.endpoint()
        url = f"{endpoint.grpc_host}:{endpoint.grpc_port}"
        enrol = pool_enrolment.enrol_url(endpoint.grpc_host)  # the agent serves it
        values += pool_server.startup_values(settings, config, url, enrol)
    attributes = [(key, value) for key, value in values if key in publish.ATTRIBUTE_BY_KEY]
    every_key = [*attributes, *publish.ready_values("")]
    publish_config(config, values, publish.condor_vars(every_key))


def run(config: GlideinConfig, reporter: Reporter, environment: Mapping[str, str]) -> int:
    """The whole startup; returns the script's exit code."""
    required = required_flag(config)
    ignored = ignored_settings(config)
    for _metric, text in ignored:
        LOG.warning("%s", text)
    guard = 0
    try:
        settings = Settings.from_config(config)
        if not settings.enabled:
            values = publish.off_values()
            publish_config(config, values, publish.condor_vars(values))
            reporter.ok([("HasTriton", "False"), *ignored])
            return 0
        install_cleanup_script(config.work_dir)
        with writing_in(glidein_paths.plugin_dir(config.work_dir)):
            settings = pool_server.with_own_tls(settings, config.work_dir, config)
        settings = pool_server.serving_every_model(settings)
        # Until the agent follows the glidein:
        with writing_in(glidein_paths.plugin_dir(config.work_dir)):  # its log is in the plugin's directory
            guard = startup_guard.spawn(config.work_dir, environment, config.get("GLIDEIN_STARTUP_PID", ""))
        running = start_server(
            config, settings, environment, lambda launched: announce(config, launched, settings)
        )
        state = running.state
        endpoint = running.endpoint()
        report = report_server(running, settings)
        if settings.gpu_mode == "gpu" and not report.used:
            for problem in server.stop(state, environment):
                LOG.warning("while stopping the server: %s", problem)
            raise ServerStartError(f"GLIDEIN_TRITON_GPU=gpu but {report.fallback}")
        ready = [
            *publish.ready_values(running.version, config.get("SLOTS_LAYOUT", "")),
            *report.values(running, config),
        ]
        if pool_server.is_pool_server(settings):
            ready += pool_ready_values(running, config, environment)
        publish_config(config, publish.changed(ready, announced_values(config, running)), [])
        start_agent(config, settings.watchdog_period, state, environment)
    except TritonSetupError as error:
        return fail(config, reporter, error, required)
    except Interrupted as interrupted:
        message = failure_messages.INTERRUPTED.format(signal=interrupted)
        return fail(config, reporter, ServerStartError(message), required)
    except Exception as error:  # a bug must not take the glidein down either
        LOG.exception("unexpected error")
        wrapped = CorruptionError(
            failure_messages.INTERNAL_ERROR.format(type=type(error).__name__, error=error)
        )
        return fail(config, reporter, wrapped, required)
    finally:
        if guard:
            startup_guard.stop(guard)
    reporter.ok(
        [
            ("HasTriton", "True"),
            ("TritonGRPCURL", f"{endpoint.grpc_host}:{endpoint.grpc_port}"),
            ("TritonGPUs", str(len(report.used))),
            ("TritonReadySeconds", f"{state.ready_at - state.started_at:.2f}"),
            *([("TritonGPUFallback", classad.machine_ad_string(report.fallback))] if report.fallback else []),
            *(
                [("TritonFailedModels", ",".join(name for name, _reason in report.failed_models))]
                if report.failed_models
                else []
            ),
            *ignored,
        ]
    )
    return 0


def pool_ready_values(
    running: RunningServer, config: GlideinConfig, environment: Mapping[str, str]
) -> list[tuple[str, str]]:
    """A ready pool server's models and ``TritonPoolAccepting``, once its release is known to be new
    enough (else it is stopped: ConfigError)."""
    try:
        pool_server.check_version(running.version)
    except ConfigError:
        for problem in server.stop(running.state, environment):
            LOG.warning("while stopping the server: %s", problem)
        raise
    server_api = Server(running.state.http_port, unix_socket=running.state.plugin_socket)
    try:
        models = [str(entry.get("name", "")) for entry in server_api.index(ready_only=True)]
    except TritonAPIError as error:
        LOG.warning("cannot read the ready models: %s", error)
        models = []
    return pool_server.ready_values(models, config, time.time())


def ignored_settings(config: GlideinConfig) -> list[tuple[str, str]]:
    """The metric naming the keys of glidein_config that look like settings but are none (misspellings),
    each with the setting it was probably meant as; empty when there are none."""
    text = unknown_settings_text(config)
    return [(IGNORED_SETTINGS_METRIC, text)] if text else []


def fail(config: GlideinConfig, reporter: Reporter, error: TritonSetupError, required: bool) -> int:
    """Publish HasTriton = False, report the failure, and decide the exit code from REQUIRED."""
    LOG.error("Triton is not available (%s): %s", error.failure_type, error.detail())
    try:
        values = publish.off_values(f"{error.failure_type}: {error.message}")
        cleared = [*publish.cleared_values(), (ACCOUNTING_KEY, "")]
        publish_config(config, [*values, *cleared], publish.condor_vars(values))
    except TritonSetupError as publish_error:
        LOG.error("could not publish HasTriton = False: %s", publish_error.detail())
    ignored = ignored_settings(config)
    if required:
        # The misspellings right after the message: the detail is shortened in its middle.
        detail = "\n".join([error.message, *(text for _metric, text in ignored), error.evidence]).rstrip()
        reporter.error(error.failure_type, detail, [("HasTriton", "False"), *ignored])
        return 1
    reporter.ok(
        [
            ("HasTriton", "False"),
            ("TritonFailure", error.failure_type),
            ("TritonFailureDetail", error.message),
            *ignored,
        ]
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    files.private_umask()  # the plugin's files 0600/0700 whatever umask the glidein has
    logs.configure("glidein-triton-setup")
    if not arguments:
        print(f"usage: {SCRIPT_NAME} glidein_config [id]", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        config = GlideinConfig.read(arguments[0])
    except CorruptionError as error:
        LOG.error("%s", error.message)
        return 1
    code = run(config, Reporter.from_config(config, SCRIPT_NAME), os.environ)
    LOG.info("startup finished in %.2f s with exit code %d", time.monotonic() - started, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
