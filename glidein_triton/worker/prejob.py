"""Pre-job hook: make the models a job asks for visible to the glidein's server, load them, hold them.

GlideinWMS's job wrapper runs ``./glidein_triton_1_prejob.sh <glidein_config>`` from ``.gwms.d/exec/prejob``
right before each job, inside the job's container when there is one, and ignores its exit code. This reads
the job's request (:mod:`job_request`), and for each model:

* a model of the server's own repository (no repository asked for, or the same one) is loaded by name;
* a model of another repository gets a link ``<work>/triton/job_models/<model>`` to its directory (the
  server serves that directory as a second repository) and is loaded.

The job is registered as a holder of each model (:mod:`model_registry`), and leaves a claim in its sandbox.
Results go to the job's stderr and, for the job's environment, to ``<sandbox>/.glidein_triton/prejob.env``
(exported by the sourced ``glidein_triton_2_prejob_env.sh``). Exit code 1 only when the job required its
models and one failed. A model that is loaded and held costs a lock and one ``GET .../ready``.

Inside a job container the glidein directory is usually not visible (GlideinWMS binds only the job's
sandbox, at /srv): then only models of the server's repository can be loaded, over HTTP, and the claim in
the sandbox is the job's only record (the periodic script adopts it).
"""

# The pre-job hook runs before every job: os.path instead of pathlib, whose import costs ~9 ms.
# ruff: noqa: PTH103, PTH105, PTH108, PTH112, PTH114, PTH115, PTH117, PTH118, PTH120, PTH123, PTH208, PTH211

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from glidein_triton.worker import model_registry, processes, token
from glidein_triton.worker.job_request import (
    JobRequest,
    RequestError,
    classad_attributes,
    read_request,
)
from glidein_triton.worker.triton_api import LOOPBACK, Server, TritonAPIError
from glidein_triton.worker.words import is_model_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

STATE_DIR_NAME = "triton"  # state.STATE_DIR_NAME (state.py imports dataclasses: slow for this hook)
STATE_FILE_NAME = "state.json"
JOB_REPOSITORY = "job_models"
CONTAINER_MARKERS = ("GWMS_SINGULARITY_REEXEC", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
DEFAULT_LOAD_TIMEOUT = 300.0


def say(message: str) -> None:
    """One line on the job's stderr (the wrapper's stderr is the job's)."""
    print(f"glidein-triton pre-job: {message}", file=sys.stderr, flush=True)


def read_text(path: str) -> str:
    try:
        with open(path, errors="replace") as stream:
            return stream.read()
    except OSError:
        return ""


class Context:
    """Where this hook runs: the plugin directory (when visible), the server, the job's sandbox."""

    def __init__(self, config_path: str, environment: Mapping[str, str]) -> None:
        self.in_container = any(environment.get(marker) for marker in CONTAINER_MARKERS)
        directory = os.path.join(os.path.dirname(config_path), STATE_DIR_NAME) if config_path else ""
        self.state: dict[str, Any] = {}
        if directory:
            self.state = model_registry.read_json(os.path.join(directory, STATE_FILE_NAME))
        self.registry = model_registry.Registry(directory) if self.state else None
        # The glidein's token file when its directory is visible, else the copy that came with .gwms.d.
        token_files = [Path(directory) / token.TOKEN_FILE_NAME] if directory else []
        self.headers = token.headers(*token_files, token.BUNDLED_TOKEN)
        self.server = self._server(environment)
        self.load_timeout = float(self.state.get("load_timeout", DEFAULT_LOAD_TIMEOUT))
        self.model_repository = str(
            self.state.get("model_repository") or environment.get("TRITON_MODEL_REPOSITORY", "")
        )
        self.visible_roots = [str(root) for root in self.state.get("visible_roots", [])]
        self.sandbox = environment.get("_CONDOR_SCRATCH_DIR", "")
        # Inside the job container the sandbox is /srv; the wrapper remembers its path outside.
        outside = environment.get("GWMS_SINGULARITY_OUTSIDE_PWD", "") if self.in_container else ""
        self.host_sandbox = outside or self.sandbox

    def _server(self, environment: Mapping[str, str]) -> Server | None:
        if self.state.get("http_port"):
            return Server(int(self.state["http_port"]), host=LOOPBACK, headers=self.headers)
        url = environment.get("TRITON_HTTP_URL", "") or machine_ad_url(environment)
        try:
            return Server.from_url(url, headers=self.headers) if url else None
        except TritonAPIError:
            return None

    def host_path(self, path: str) -> str:
        """The path the server sees for a path this hook sees (they differ for the sandbox in a container)."""
        if self.host_sandbox != self.sandbox and self.sandbox and is_under(path, self.sandbox):
            return self.host_sandbox + path[len(self.sandbox.rstrip("/")) :]
        return path

    def holder(self, request: JobRequest, environment: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
        """The holder name and record of the job: GlobalJobId, sandbox, wrapper pid (outside containers)."""
        record: dict[str, Any] = {"job": request.job_id, "sandbox": self.host_sandbox, "since": time.time()}
        if not self.in_container:  # (in a container, pids are those of its own pid namespace)
            wrapper = int(environment.get("GLIDEIN_TRITON_WRAPPER_PID", "") or os.getppid())
            record.update(pid=wrapper, ticks=model_registry.process_start_ticks(wrapper))
        if request.job_id:
            return request.job_id, record
        if self.host_sandbox:
            return f"sandbox:{self.host_sandbox}", record
        return f"pid:{record.get('pid', os.getpid())}:{record.get('ticks', 0)}", record


def machine_ad_url(environment: Mapping[str, str]) -> str:
    """TritonHTTPURL from the machine ad file HTCondor gives the job."""
    path = environment.get("_CONDOR_MACHINE_AD", "")
    return classad_attributes(read_text(path), ("TritonHTTPURL",)).get("TritonHTTPURL", "") if path else ""


def is_under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def requested_models(request: JobRequest) -> list[str]:
    """The names asked for; with a repository and no names, every model directory in it."""
    if request.models or not request.repository:
        return request.models
    try:
        entries = sorted(os.listdir(request.repository))
    except OSError as error:
        raise RequestError(f"cannot list model repository {request.repository}: {error.strerror}") from error
    return [
        name
        for name in entries
        if not name.startswith(".")
        and is_model_name(name)
        and os.path.isdir(os.path.join(request.repository, name))
    ]


class PreJob:
    """One run of the hook for one job."""

    def __init__(self, context: Context, request: JobRequest, environment: Mapping[str, str]) -> None:
        self.context = context
        self.request = request
        self.server = context.server
        self.holder, self.record = context.holder(request, environment)
        self.loaded: list[str] = []

    def own_repository(self) -> bool:
        """Whether the job's models are the server's own (loaded by name, no link needed)."""
        repository = self.request.repository
        served = self.context.model_repository
        if not repository:
            return True
        if not served:
            return False
        return os.path.normpath(repository) == os.path.normpath(served) or (
            os.path.realpath(repository) == os.path.realpath(served)
        )

    def source_of(self, model: str) -> str:
        """The directory to link for ``model`` (as the server sees it), or "" for a repository model."""
        if self.own_repository():
            return ""
        local = os.path.join(self.request.repository, model)
        if not os.path.isdir(local):
            raise RequestError(f"{model}: no model directory {local}")
        source = self.context.host_path(local)
        roots = self.context.visible_roots
        if roots and not any(is_under(source, root) for root in roots):
            raise RequestError(
                f"{model}: {source} is not visible to the server's container, which sees "
                f"{', '.join(roots)} only: put the repository under one of them"
            )
        return source

    def ensure_loaded(self, server: Server, model: str, reload: bool = False) -> None:
        if reload or not server.is_model_ready(model):
            server.load(model, self.context.load_timeout)
            self.loaded.append(model)
            # Outside a container: the new model's /dev/shm regions private at once, not at the next period.
            processes.private_shared_memory()

    def hold(self, server: Server, model: str) -> None:
        """Register this job as a holder of ``model`` and make sure it is loaded; raises on failure."""
        source = self.source_of(model)
        registry = self.context.registry
        if registry is None:
            if source:
                raise RequestError(
                    f"{model}: a job repository ({self.request.repository}) can only be linked into the "
                    "server from where the glidein directory is visible, and this job's container does "
                    "not see it: use the server's repository, or run the job outside a container"
                )
            self.ensure_loaded(server, model)
            return
        link = os.path.join(registry.directory, JOB_REPOSITORY, model)
        with registry.model_lock(model, self.context.load_timeout + 30):
            with registry.lock():
                entry = registry.models().get(model)
            reload = False
            if entry is not None and entry.get("source", "") != source:
                others = [
                    name
                    for name, record in entry.get("holders", {}).items()
                    if name != self.holder and model_registry.holder_alive(record)
                ]
                if others:
                    served = entry.get("source") or "the server's repository"
                    raise RequestError(f"{model}: another job uses a different model of that name ({served})")
                reload = True  # a stale entry whose jobs are gone: take the name over
            if source and entry is None and not os.path.islink(link) and self.served_elsewhere(server, model):
                raise RequestError(
                    f"{model}: the server's repository has a model of that name; "
                    "ask for it without a repository"
                )
            if source:
                replace_link(link, source)
            elif os.path.islink(link):
                os.unlink(link)  # taken over from gone jobs' repository: the server's own model now
            self.register(model, source)
            try:
                self.ensure_loaded(server, model, reload)
            except TritonAPIError:
                self.unregister(model, link)
                raise

    @staticmethod
    def served_elsewhere(server: Server, model: str) -> bool:
        return any(entry.get("name") == model for entry in server.index())

    def register(self, model: str, source: str) -> None:
        registry = self.context.registry
        if registry is None:
            return
        with registry.lock():
            models = registry.models()
            entry = models.setdefault(model, {"holders": {}})
            entry["source"] = source
            entry["holders"][self.holder] = self.record
            registry.save(models)

    def unregister(self, model: str, link: str) -> None:
        """Undo :meth:`register` after a failed load; the last holder also removes the link."""
        registry = self.context.registry
        if registry is None:
            return
        with registry.lock():
            models = registry.models()
            entry = models.get(model, {"holders": {}})
            entry["holders"].pop(self.holder, None)
            if not entry["holders"]:
                models.pop(model, None)
                if os.path.islink(link):
                    os.unlink(link)
            registry.save(models)

    def run(self, models: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """(ready models, {failed model: reason})."""
        ready: list[str] = []
        failed: dict[str, str] = {}
        if self.server is None:
            return ready, dict.fromkeys(models, "this glidein has no Triton server (HasTriton is not True)")
        sandbox = self.context.sandbox
        if sandbox:  # before any load: the reaper must never miss a model a job is about to use
            model_registry.write_claim(sandbox, self.holder, self.record, list(models))
        for model in models:
            try:
                self.hold(self.server, model)
                ready.append(model)
            except (RequestError, TritonAPIError, OSError) as error:
                failed[model] = str(error)
        if sandbox and failed:
            model_registry.write_claim(sandbox, self.holder, self.record, ready)
        return ready, failed


def write_environment(sandbox: str, ready: Sequence[str], failed: Sequence[str], required: bool) -> None:
    """The variables the sourced glidein_triton_2_prejob_env.sh exports to the job."""
    if not sandbox:
        return
    status = "ready" if not failed else ("required-failed" if required else "failed")
    directory = os.path.join(sandbox, model_registry.JOB_DIR)
    os.makedirs(directory, exist_ok=True)
    lines = [
        f"TRITON_MODELS_READY={','.join(ready)}",
        f"TRITON_MODELS_FAILED={','.join(failed)}",
        f"TRITON_MODELS_STATUS={status}",
    ]
    temporary = os.path.join(directory, f".{model_registry.ENVIRONMENT_FILE}.{os.getpid()}")
    with open(temporary, "w") as stream:
        stream.write("\n".join(lines) + "\n")
    os.replace(temporary, os.path.join(directory, model_registry.ENVIRONMENT_FILE))


def run(config_path: str, environment: Mapping[str, str]) -> int:
    """The whole hook; returns its exit code."""
    started = time.monotonic()
    sandbox = environment.get("_CONDOR_SCRATCH_DIR", "")
    try:
        request = read_request(environment, read_text(environment.get("_CONDOR_JOB_AD", "")))
        if request.empty:
            return 0
        if request.repository and not os.path.isabs(request.repository):
            if not sandbox:
                message = f"{request.repository}: a relative repository needs the job's sandbox"
                raise RequestError(message, request.required)
            request.repository = os.path.join(sandbox, request.repository)
        models = requested_models(request)
    except RequestError as error:
        say(f"cannot use the job's Triton request: {error}")
        write_environment(sandbox, [], ["request"], error.required)
        return 1 if error.required else 0
    context = Context(config_path, environment)
    prejob = PreJob(context, request, environment)
    ready, failed = prejob.run(models)
    write_environment(context.sandbox, ready, list(failed), request.required)
    for model, reason in failed.items():
        say(f"model {model} is NOT available: {reason}")
    elapsed = (time.monotonic() - started) * 1000
    loaded = ", ".join(prejob.loaded) or "none"
    say(
        f"{len(ready)}/{len(models)} models ready ({', '.join(ready) or 'none'}; "
        f"loaded now: {loaded}) in {elapsed:.0f} ms"
    )
    if failed and request.required:
        say("this job requires its models (TritonModelsRequired): it should not run")
        return 1
    return 0


def replace_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a new link made beside the repository, renamed over the old.

    The new link is made outside the repository so that the server never sees a half-made model name.
    """
    if os.path.islink(link) and os.readlink(link) == target:
        return
    repository = os.path.dirname(link)
    os.makedirs(repository, exist_ok=True)
    temporary = os.path.join(os.path.dirname(repository), f".link.{os.getpid()}")
    os.symlink(target, temporary)
    os.replace(temporary, link)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    return run(arguments[0] if arguments else "", os.environ)


if __name__ == "__main__":
    sys.exit(main())
