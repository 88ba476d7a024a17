"""Command lines for each runtime, built as argument lists and run without a shell.

* ``process``: the ``tritonserver`` binary runs directly on the node.
* ``apptainer`` / ``singularity``: ``$SINGULARITY_PATH instance start [--nv] --bind <repo>:/models <image>
  <instance>`` starts a named instance, ``$SINGULARITY_PATH exec instance://<instance> tritonserver ...``
  runs the server in it, and ``$SINGULARITY_PATH instance stop <instance>`` ends it. The instance has a
  network namespace of its own (``--net --network none``) and the front door (:mod:`door`,
  ``--container``) runs that exec: the server's gRPC listens on a Unix socket of the plugin's door
  directory (bound at /door), its HTTP and metrics on the instance's loopback, brought to Unix sockets
  there by a relay (``door.py --relay`` run by the image's python3), and the door's loopback listeners on
  the host admit the glidein's uid only. In remote mode the door's gRPC listener is on the node's address
  and admits every peer: the server's own mutual TLS decides.

Apptainer keeps its instance records under its config dir (``$HOME/.apptainer`` by default), and only
commands run with the same one see an instance. A pool account's HOME may be missing or read-only, so
every instance command runs through ``env`` with ``APPTAINER_CONFIGDIR`` (``SINGULARITY_CONFIGDIR`` for
singularity) set to the plugin's own directory; ``instance start`` also runs without
``DBUS_SESSION_BUS_ADDRESS`` and ``XDG_RUNTIME_DIR`` (unprivileged starts under cgroups v2 have failed when
they pointed at nothing usable). The commands stay plain argument lists, recorded in the state file, so
the cleanup, the agent and a restart run them with the same config dir whatever their own environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import cvmfs, door, images
from glidein_triton.worker.errors import ConfigError, RuntimeNotFoundError, TritonSetupError, VOConfigError
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.ports import LOOPBACK, Ports
from glidein_triton.worker.state import LaunchPlan
from glidein_triton.worker.triton_release import METRICS_OFF, TritonRelease, fit_options

CONTAINER_MODEL_REPOSITORY = "/models"
CONTAINER_SERVER = "tritonserver"
CONTAINER_RUNTIMES = ("apptainer", "singularity")
#: the frontend's GLIDEIN_Singularity_Use values under which GlideinWMS's singularity_setup.sh sets up
#: Apptainer (publishes SINGULARITY_PATH); unset means DISABLE_GWMS
CONTAINER_USES = ("OPTIONAL", "PREFERRED", "REQUIRED")
BIND_SEPARATORS = (",", ":")
SHELL_SAFE_PUNCTUATION = "_-.,+:@%=/"
SHELL_SAFE_PATH = re.compile(rf"^[A-Za-z0-9{re.escape(SHELL_SAFE_PUNCTUATION)}]*$")
PYTHON_BACKEND = re.compile(r'^\s*backend\s*:\s*"python"', re.MULTILINE)
ENV_PROGRAM = "/usr/bin/env"
#: The plugin's Apptainer config dir, in its own directory of the glidein.
CONFIG_DIR_NAME = "apptainer"
CONFIG_DIR_VARIABLES = {"apptainer": "APPTAINER_CONFIGDIR", "singularity": "SINGULARITY_CONFIGDIR"}
#: Unset for ``instance start``.
SESSION_VARIABLES = ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR")
#: The plugin's door directory (<triton dir>/door, 0700) and where it is bound in the instance (read-write:
#: the server and the relay make their sockets there); the door's code, bound read-only.
DOOR_DIR_NAME = "door"
CONTAINER_DOOR = "/door"
CONTAINER_DOOR_CODE = "/glidein-triton-door"
CONTAINER_PYTHON = "python3"
#: The sockets of the door directory: Triton names its gRPC socket ``<--grpc-address>:<--grpc-port>``
#: (measured on 2.51: ``--grpc-address=unix:/door/grpc.sock --grpc-port=8001`` makes
#: ``/door/grpc.sock:8001``); the relay's HTTP socket is also the plugin's own route to the server.
GRPC_SOCKET = "grpc.sock"
HTTP_SOCKET = "http.sock"
METRICS_SOCKET = "metrics.sock"


def server_options(
    model_repository: str,
    ports: Ports,
    models: Sequence[str],
    extra: Sequence[str],
    grpc_address: str = LOOPBACK,
    more_repositories: Sequence[str] = (),
    control_mode: str = "explicit",
) -> list[str]:
    """tritonserver's options: explicit model control (``models`` loaded at start) unless ``control_mode``
    is ``none`` (a pool server: every model of the repositories loaded, no load or unload later); HTTP and
    metrics on loopback, gRPC on ``grpc_address`` (loopback too unless in remote mode)."""
    options = [
        f"--model-repository={model_repository}",
        *(f"--model-repository={repository}" for repository in more_repositories),
        f"--model-control-mode={control_mode}",
        f"--http-address={LOOPBACK}",
        f"--http-port={ports.http}",
        f"--grpc-address={grpc_address}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={LOOPBACK}",
        f"--metrics-port={ports.metrics}",
    ]
    if control_mode == "explicit":  # Triton refuses --load-model in any other mode
        options += [f"--load-model={model}" for model in models]
    return options + list(extra)


def cuda_environment(gpus: Sequence[GPU], visible: str = "") -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for the server: ``visible`` (the site's value, when the server uses all it
    names), else the chosen devices by uuid; none at all in CPU mode."""
    if not gpus:
        return {"CUDA_VISIBLE_DEVICES": ""}
    return {"CUDA_VISIBLE_DEVICES": visible or ",".join(gpu.uuid for gpu in gpus)}


def instance_name() -> str:
    """A name unique per glidein on this node (Apptainer accepts ``[a-zA-Z0-9._-]+``)."""
    return f"glidein-triton-{os.getpid()}-{os.urandom(4).hex()}"


def process_plan(
    binary: str,
    model_repository: str,
    ports: Ports,
    models: Sequence[str],
    extra: Sequence[str],
    gpus: Sequence[GPU],
    search_path: str | None = None,
    grpc_address: str = LOOPBACK,
    more_repositories: Sequence[str] = (),
    *,
    release: TritonRelease | None = None,
    operator_options: Sequence[str] = (),
    cuda_visible_devices: str = "",
    memory_limit: int = 0,
    control_mode: str = "explicit",
) -> LaunchPlan:
    """Run ``binary`` (a path, or a name found on PATH) directly, with the options ``release`` accepts and
    its data limited to ``memory_limit`` MiB (0: no limit)."""
    executable = find_server_binary(binary, search_path)
    check_python_backend_path(model_repository, models)
    options = fit_options(
        release or TritonRelease(),
        server_options(model_repository, ports, models, extra, grpc_address, more_repositories, control_mode),
        operator_options,
    )
    return LaunchPlan(
        runtime="process",
        server=[executable, *options],
        environment=cuda_environment(gpus, cuda_visible_devices),
        metrics=METRICS_OFF not in options,
        memory_limit=memory_limit,
    )


def behind_door(plan: LaunchPlan, plugin_socket: Path) -> list[str]:
    """The command that starts ``plan``'s server (process runtime): the front door (:mod:`door`) runs it
    in a network namespace of its own, where only the door reaches it: its job routes on the host's
    loopback (same ports: gRPC and HTTP filtered for jobs, metrics), which admit the glidein's uid alone,
    and its plugin route, the Unix socket ``plugin_socket``. In remote mode (gRPC on the node's address)
    the server listens on its namespace's loopback and the door forwards the node's port to it as it is:
    the server's own mutual TLS checks the peers."""
    values = dict(
        option[2:].split("=", 1) for option in plan.server[1:] if option.startswith("--") and "=" in option
    )
    ports = {"grpc": values.get("grpc-port", ""), "http": values.get("http-port", "")}
    if METRICS_OFF not in plan.server:
        ports["metrics"] = values.get("metrics-port", "")
    if plan.runtime != "process" or not all(port.isdigit() for port in ports.values()):
        return list(plan.server)
    server = list(plan.server)
    routes = [f"{kind}@{values.get(f'{kind}-address', LOOPBACK)}:{port}" for kind, port in ports.items()]
    remote = values.get("grpc-address", LOOPBACK)
    if remote != LOOPBACK:
        server[server.index(f"--grpc-address={remote}")] = f"--grpc-address={LOOPBACK}"
        routes[0] = f"remote@{remote}:{ports['grpc']}={LOOPBACK}:{ports['grpc']}"
    routes.append(f"plugin@unix:{plugin_socket}={LOOPBACK}:{ports['http']}")
    arguments = [argument for route in routes for argument in ("--route", route)]
    return [*door.command(*arguments), "--", *server]  # it admits its own uid: the glidein's


def find_server_binary(binary: str, search_path: str | None) -> str:
    """The tritonserver executable of the process runtime: a path, or a name found on PATH."""
    executable = shutil.which(binary, path=search_path)
    if executable is None:
        raise RuntimeNotFoundError(
            f"tritonserver binary {binary!r} not found or not executable (GLIDEIN_TRITON_SERVER_BINARY)"
        )
    return executable


def check_python_backend_path(model_repository: str, models: Sequence[str]) -> None:
    """Triton's python backend cannot serve models from a path with blanks, shell characters or non-ASCII.

    It starts each model's stub with ``bash -c`` and the path unquoted (a blank makes the server wait
    forever), and the stub's embedded Python reads paths as ASCII. In a container the path is /models.
    """
    if SHELL_SAFE_PATH.match(model_repository):
        return
    repository = Path(model_repository)
    try:
        names = sorted(path.name for path in repository.iterdir()) if list(models) == ["*"] else models
    except OSError:
        return  # the repository itself is checked elsewhere
    for name in names:
        try:
            config = (repository / name / "config.pbtxt").read_text(errors="replace")
        except OSError:
            continue
        if PYTHON_BACKEND.search(config):
            raise VOConfigError(
                f"model {name} uses Triton's python backend, which cannot load models from "
                f"{model_repository}: use a path of letters, digits and {SHELL_SAFE_PUNCTUATION} only "
                "(GLIDEIN_TRITON_MODEL_REPOSITORY), or a container runtime, where it is /models"
            )


def container_plan(
    runtime: str,
    singularity_path: str,
    image: str,
    model_repository: str,
    ports: Ports,
    models: Sequence[str],
    extra: Sequence[str],
    gpus: Sequence[GPU],
    instance: str,
    grpc_address: str = LOOPBACK,
    more_repositories: Sequence[str] = (),
    same_path_binds: Sequence[str] = (),
    *,
    release: TritonRelease | None = None,
    operator_options: Sequence[str] = (),
    cuda_visible_devices: str = "",
    config_dir: str,
    door_dir: str,
    memory_limit: int = 0,
    cvmfs_mount: str = "",
    control_mode: str = "explicit",
) -> LaunchPlan:
    """Start an Apptainer/Singularity instance of ``image`` and run the server inside it.

    The server is behind the front door (:func:`container_door`), its sockets in ``door_dir``; with
    ``grpc_address`` not on loopback (remote mode), the door forwards that address's gRPC port to the
    server's gRPC socket as it is (the server's own mutual TLS checks the peers).

    ``cvmfs_mount`` (where cvmfsexec mounted CVMFS) is bound at /cvmfs too, as GlideinWMS binds it into
    its containers, so that paths and links on /cvmfs resolve inside the instance.

    ``memory_limit`` (MiB, 0: none) is set on the ``exec`` command alone, not on the instance start: the
    runtime's starter passes its limits on to the server it starts.

    ``same_path_binds`` (host directories, TLS files) are bound read-only at the same path, so that
    ``more_repositories`` (given as host paths), the targets of the links in them and the TLS files
    resolve inside the instance too. Every command uses ``config_dir`` (:func:`in_config_dir`).
    """
    bindable(model_repository, "GLIDEIN_TRITON_MODEL_REPOSITORY", VOConfigError)
    for path in same_path_binds:
        bindable(path, "GLIDEIN_TRITON_TLS_* or the glidein directory", ConfigError)
    bindable(cvmfs_mount, cvmfs.MOUNT_DIR_KEY, ConfigError)
    grpc_listen = grpc_address
    start = [*in_config_dir(runtime, config_dir, SESSION_VARIABLES), singularity_path, "instance", "start"]
    if gpus:
        start.append("--nv")
    bindable(door_dir, "the glidein directory", ConfigError)
    bindable(str(Path(door.__file__).parent), "the plugin's directory", ConfigError)
    start += ["--net", "--network", "none", "--bind", f"{door_dir}:{CONTAINER_DOOR}"]
    start += ["--bind", f"{door.CODE_ROOT}:{CONTAINER_DOOR_CODE}:ro"]
    grpc_address = f"{door.UNIX_PREFIX}{CONTAINER_DOOR}/{GRPC_SOCKET}"
    start += ["--bind", f"{model_repository}:{CONTAINER_MODEL_REPOSITORY}:ro"]
    for path in same_path_binds:
        start += ["--bind", f"{path}:{path}:ro"]
    if cvmfs_mount:
        start += ["--bind", f"{cvmfs_mount}:{cvmfs.CVMFS}:ro"]
    start += [image, instance]
    run = [*in_config_dir(runtime, config_dir), singularity_path, "exec"]
    for name, value in sorted(cuda_environment(gpus, cuda_visible_devices).items()):
        run += ["--env", f"{name}={value}"]
    options = fit_options(
        release or TritonRelease(),
        server_options(
            CONTAINER_MODEL_REPOSITORY, ports, models, extra, grpc_address, more_repositories, control_mode
        ),
        operator_options,
    )
    run += [f"instance://{instance}", CONTAINER_SERVER, *options]
    metrics = METRICS_OFF not in options
    exec_prefix = [*in_config_dir(runtime, config_dir), singularity_path, "exec"]
    run = container_door(exec_prefix, instance, ports, metrics, door_dir, run, grpc_listen)
    return LaunchPlan(
        plugin_socket=str(Path(door_dir, HTTP_SOCKET)),
        runtime=runtime,
        server=run,
        prepare=[start],
        teardown=[[*in_config_dir(runtime, config_dir), singularity_path, "instance", "stop", instance]],
        instance=instance,
        metrics=metrics,
        memory_limit=memory_limit,
    )


def container_door(
    exec_prefix: Sequence[str],
    instance: str,
    ports: Ports,
    metrics: bool,
    door_dir: str,
    server: Sequence[str],
    grpc_listen: str = LOOPBACK,
) -> list[str]:
    """The front door's command for a server run by ``server`` (an exec into ``instance``): loopback
    listeners on the host (the server's ports) to the Unix sockets of ``door_dir``, and the relay, run by
    ``exec_prefix`` in the instance, from the instance's loopback to those sockets. gRPC listens on
    ``grpc_listen``: off loopback (remote mode) a ``remote`` route, which admits every peer."""
    relayed = [(ports.http, HTTP_SOCKET)] + ([(ports.metrics, METRICS_SOCKET)] if metrics else [])
    relay = [*exec_prefix, f"instance://{instance}", CONTAINER_PYTHON, "-I", "-S", "-c", door.BOOTSTRAP]
    relay.append(CONTAINER_DOOR_CODE)
    for port, name in relayed:
        relay += [door.RELAY_MODE, f"{door.UNIX_PREFIX}{CONTAINER_DOOR}/{name}={LOOPBACK}:{port}"]
    kinds = ["http", "metrics"]
    routes = [(kind, LOOPBACK, port, name) for kind, (port, name) in zip(kinds, relayed)]
    grpc_kind = "grpc" if grpc_listen == LOOPBACK else "remote"
    routes.append((grpc_kind, grpc_listen, ports.grpc, f"{GRPC_SOCKET}:{ports.grpc}"))
    argv = door.command(door.CONTAINER_MODE, "--directory", door_dir)
    for kind, host, port, name in routes:
        argv += ["--route", f"{kind}@{host}:{port}={door.UNIX_PREFIX}{name}"]
    return [*argv, "--relay-command", json.dumps(relay), "--", *server]


def in_config_dir(runtime: str, config_dir: str, unset: Sequence[str] = ()) -> list[str]:
    """``env`` words that run a runtime command with ``config_dir`` as config dir, and without ``unset``."""
    words = [ENV_PROGRAM]
    for name in unset:
        words += ["-u", name]
    return [*words, f"{CONFIG_DIR_VARIABLES.get(runtime, CONFIG_DIR_VARIABLES['apptainer'])}={config_dir}"]


def bindable(path: str, setting: str, error: type[TritonSetupError]) -> None:
    """Apptainer splits ``--bind`` values on ``,`` (several binds) and ``:`` (source:destination:options)."""
    if any(separator in path for separator in BIND_SEPARATORS):
        raise error(
            f"{path} cannot be bound into the container: Apptainer's --bind splits paths "
            f"on {' and '.join(repr(s) for s in BIND_SEPARATORS)} ({setting})"
        )


def find_container_runtime(runtime: str, config: Mapping[str, str], search_path: str | None) -> str:
    """The container executable: SINGULARITY_PATH from the glidein's Singularity set-up (on /cvmfs: under
    cvmfsexec's mount), else PATH."""
    configured = cvmfs.resolve(config.get("SINGULARITY_PATH", "").strip(), cvmfs.mount_dir(config))
    candidates = [configured] if configured else []
    candidates += [runtime] if runtime in CONTAINER_RUNTIMES else list(CONTAINER_RUNTIMES)
    for candidate in candidates:
        found = shutil.which(candidate, path=search_path)
        if found:
            return found
    raise RuntimeNotFoundError(
        f"no container runtime: SINGULARITY_PATH={configured!r} is not executable and "
        f"{' or '.join(CONTAINER_RUNTIMES)} is not on PATH"
    )


def check_image(image: str) -> None:
    """A local image (file or sandbox directory, e.g. on CVMFS) must exist; URIs are left to the runtime."""
    if not image:
        raise VOConfigError(images.NO_IMAGE)
    if not images.is_remote(image) and not Path(image).exists():
        raise VOConfigError(f"server image {image} does not exist on this node")


def choose_runtime(requested: str, image: str, config: Mapping[str, str], search_path: str | None) -> str:
    """Resolve ``auto``: a container when there is an image and a container runtime, else ``process``."""
    if requested != "auto":
        return requested
    if image:
        try:
            found = find_container_runtime(requested, config, search_path)
        except RuntimeNotFoundError:
            return "process"
        return "singularity" if Path(found).name.startswith("singularity") else "apptainer"
    return "process"
