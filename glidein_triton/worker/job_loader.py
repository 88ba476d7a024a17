"""The agent's work for one new job sandbox: its models, its answer.

The agent (:mod:`agent`) calls :meth:`JobLoader.serve` once for each job sandbox it finds under HTCondor's
execute directory (``execute/dir_<pid>``, the job ad in ``.job.ad``). Into the sandbox's ``.glidein_triton/``
(made by the agent, never followed through a link) it writes, in this order, the files of
:mod:`sandbox_protocol`: ``pending`` (the model load timeout and a margin), ``claim.json`` (the models the
job holds, for the reaper: :mod:`reaper`) and the answer, ``prejob.env`` (status ``ready``, ``failed``,
``required-failed``, or ``none`` when nothing was asked for), which the pre-job exports and the client
helper reads.

Models come from the job ad (:mod:`job_request`). A model of the server's own repository is loaded by name; a
model of a job repository only as the operator's policy allows (:mod:`job_policy`): it is copied into a
private snapshot (:mod:`model_snapshot`), vetted there, and the server loads the snapshot through a link
``<plugin dir>/job_models/<model>``. The snapshot stays what the server loads, on restarts and reloads,
until no job holds the model; a job that asks for the model while others hold it gets the same snapshot. An
ensemble's models must be ones the job asks for (loaded first) or the server's own. Each job is a holder of
its models in the reference counts (:mod:`model_registry`), named by its GlobalJobId (else its sandbox).
"""

# The agent serves jobs in threads with directory descriptors and os.path strings, as model_registry does.
# ruff: noqa: PTH102, PTH103, PTH105, PTH108, PTH112, PTH114, PTH115, PTH117, PTH118, PTH119, PTH120, PTH123, PTH208, PTH211

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

from glidein_triton.worker import cvmfs, model_registry, model_snapshot, processes, sandbox_protocol
from glidein_triton.worker.job_policy import Policy, PolicyError, Refusal
from glidein_triton.worker.job_request import JobRequest, RequestError, read_request
from glidein_triton.worker.state import JOB_REPOSITORY
from glidein_triton.worker.triton_api import Server, TritonAPIError
from glidein_triton.worker.word_rules import is_model_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

LOG = logging.getLogger(__name__)

#: What the server answers to the load of a model that none of its repositories has.
NOT_IN_REPOSITORIES = "failed to poll from model repository"


class MissingModels(RequestError):
    """An ensemble names models that are not loaded for this job (yet)."""


class JobDirectory:
    """``<sandbox>/.glidein_triton``, opened without following links: a job cannot redirect our writes."""

    def __init__(self, sandbox: str) -> None:
        path = os.path.join(sandbox, sandbox_protocol.JOB_DIR)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        self.descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def write(self, name: str, text: str) -> None:
        """Replace ``name`` atomically with a new file of mode 0600."""
        temporary = f".{name}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=self.descriptor)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(temporary, flags, 0o600, dir_fd=self.descriptor), "w") as stream:
            stream.write(text)
        os.replace(temporary, name, src_dir_fd=self.descriptor, dst_dir_fd=self.descriptor)

    def close(self) -> None:
        os.close(self.descriptor)


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


class JobLoader:
    """Loads jobs' models on the glidein's server, for the agent (through the plugin's own route)."""

    def __init__(
        self,
        directory: str,
        server: Server,
        policy: Policy,
        model_repository: str,
        load_timeout: float,
        *,
        cvmfs_mount: str = "",
    ) -> None:
        self.registry = model_registry.Registry(directory)
        self.server = server
        self.policy = policy
        self.model_repository = model_repository
        self.load_timeout = load_timeout
        self.cvmfs_mount = cvmfs_mount

    def serve(self, sandbox: str) -> None:
        """Everything for the job of ``sandbox`` (see the module doc). A request that cannot be used is
        answered as a failure; OSError when the sandbox cannot be written (gone, or a job's link)."""
        started = time.monotonic()
        job_dir = JobDirectory(sandbox)
        try:
            wait = self.load_timeout + sandbox_protocol.ANSWER_MARGIN
            job_dir.write(sandbox_protocol.PENDING_FILE, sandbox_protocol.pending_text(wait))
            ready, failed, request = self.load_for(sandbox, job_dir)
            asked = request is None or not request.empty
            required = request is None or request.required
            answer = sandbox_protocol.Answer.of(ready, failed, required, asked)
            job_dir.write(sandbox_protocol.ANSWER_FILE, answer.text())
        finally:
            job_dir.close()
        if asked:
            LOG.info(
                "job %s: %d models ready (%s), failed: %s, in %.0f ms",
                os.path.basename(sandbox),
                len(ready),
                ",".join(ready) or "none",
                "; ".join(f"{name}: {why}" for name, why in failed.items()) or "none",
                (time.monotonic() - started) * 1000,
            )

    def load_for(
        self, sandbox: str, job_dir: JobDirectory
    ) -> tuple[list[str], dict[str, str], JobRequest | None]:
        """(ready, {failed: reason}, request or None when it could not be read)."""
        try:
            with open(os.path.join(sandbox, sandbox_protocol.JOB_AD_FILE), errors="replace") as stream:
                ad_text = stream.read()
        except OSError:
            ad_text = ""
        try:
            request = read_request(ad_text)
            if request.empty:
                return [], {}, request
            if request.repository and not os.path.isabs(request.repository):
                request.repository = os.path.join(sandbox, request.repository)
            request.repository = cvmfs.resolve(request.repository, self.cvmfs_mount)
            models = requested_models(request)
        except RequestError as error:
            return [], {"request": str(error)}, None
        holder = request.job_id or f"sandbox:{sandbox}"
        record: dict[str, Any] = {"job": request.job_id, "sandbox": sandbox, "since": time.time()}
        claim = {"holder": holder, "record": record, "models": models}
        # Before any load: never reaped under it.
        job_dir.write(sandbox_protocol.CLAIM_FILE, json.dumps(claim))
        ready: list[str] = []
        failed: dict[str, str] = {}
        pending = list(models)
        while pending:  # an ensemble waits for the models it names, asked for by the same job
            deferred: dict[str, str] = {}
            for model in pending:
                try:
                    self.hold(request, model, holder, record, ready)
                    ready.append(model)
                except MissingModels as error:
                    deferred[model] = str(error).removeprefix(f"{model}: ")
                except (PolicyError, RequestError, TritonAPIError, OSError) as error:
                    failed[model] = str(error).removeprefix(f"{model}: ")
            if len(deferred) == len(pending):
                failed.update(deferred)
                break
            pending = list(deferred)
        ready.sort(key=models.index)
        if failed:
            job_dir.write(sandbox_protocol.CLAIM_FILE, json.dumps({**claim, "models": ready}))
        return ready, failed, request

    def source_of(self, request: JobRequest, model: str) -> tuple[str, str]:
        """(the resolved directory of ``model``, its prefix), or ("", "") for a model of the server's own
        repository."""
        repository = request.repository
        served = self.model_repository
        if not repository or (served and os.path.realpath(repository) == os.path.realpath(served)):
            return "", ""
        return self.policy.locate(repository, model)

    @staticmethod
    def taken_over(entry: dict[str, Any], source: str, model: str, holder: str) -> bool:
        """True when ``entry`` is another model of that name whose jobs are gone (its name is taken over);
        raises while a live job holds it."""
        if entry.get("source", "") == source:
            return False
        others = [
            name
            for name, held in entry.get("holders", {}).items()
            if name != holder and model_registry.holder_alive(held)
        ]
        if others:
            served = entry.get("source") or "the server's repository"
            raise RequestError(f"{model}: another job uses a different model of that name ({served})")
        return True

    def hold(
        self, request: JobRequest, model: str, holder: str, record: dict[str, Any], ready: Sequence[str] = ()
    ) -> None:
        """Register ``holder`` for ``model`` and make sure it is loaded; raises on failure. ``ready``: the
        models already loaded for this job (an ensemble may name them)."""
        source, prefix = self.source_of(request, model)
        link = os.path.join(self.registry.directory, JOB_REPOSITORY, model)
        with self.registry.model_lock(model, self.load_timeout + 30):
            with self.registry.editing() as document:
                entry = document.get("models", {}).get(model)
            reload = entry is not None and self.taken_over(entry, source, model, holder)
            if source and entry is None and not os.path.islink(link) and self.served_elsewhere(model):
                raise RequestError(
                    f"{model}: the server's repository has a model of that name; "
                    "ask for it without a repository"
                )
            old = str(entry.get("snapshot", "")) if entry else ""
            snapshot, needs = ("", []) if reload else (old, list(entry.get("needs", [])) if entry else [])
            fresh = bool(source) and not model_snapshot.is_snapshot(self.registry.directory, snapshot)
            if fresh:
                snapshot = model_snapshot.new_path(self.registry.directory, model)
                decision = self.policy.vet(source, prefix, snapshot)
                if isinstance(decision, Refusal):
                    raise PolicyError(f"{model}: {decision.reason}")
                needs = list(decision.needs)
                reload = reload or entry is not None
            missing = [need for need in needs if need not in ready and not self.own_model(need)]
            if missing:
                if fresh:
                    model_snapshot.remove(self.registry.directory, snapshot)
                raise MissingModels(
                    f"{model}: the ensemble needs {', '.join(missing)}: ask for them in the same job "
                    "(from the same repository), or use models of the server's repository"
                )
            if source:
                replace_link(link, snapshot)
            elif os.path.islink(link):
                os.unlink(link)  # taken over from gone jobs' repository: the server's own model now
            self.register(model, {"source": source, "snapshot": snapshot, "needs": needs}, holder, record)
            if old != snapshot:
                model_snapshot.remove(self.registry.directory, old)
            try:
                if reload or not self.server.is_model_ready(model):
                    self.server.load(model, self.load_timeout)
                    # The new model's /dev/shm regions private at once, not at the next periodic run.
                    processes.private_shared_memory()
            except TritonAPIError as error:
                self.unregister(model, link, holder)
                if source or NOT_IN_REPOSITORIES not in str(error):
                    raise
                raise RequestError(
                    f"{model}: not a model of the glidein's repository "
                    f"({self.model_repository or 'it serves none'}), and the job names no repository of its "
                    f"own (+TritonModelRepository): {error}"
                ) from error

    def own_model(self, model: str) -> bool:
        """A model of the server's own repository (not one linked for jobs)."""
        link = os.path.join(self.registry.directory, JOB_REPOSITORY, model)
        return not os.path.islink(link) and self.served_elsewhere(model)

    def served_elsewhere(self, model: str) -> bool:
        return any(entry.get("name") == model for entry in self.server.index(timeout=self.load_timeout))

    def register(self, model: str, loaded: dict[str, Any], holder: str, record: dict[str, Any]) -> None:
        """``loaded``: the entry's source, snapshot and needs."""
        with self.registry.editing() as document:
            entry = document.setdefault("models", {}).setdefault(model, {"holders": {}})
            entry.update(loaded)
            entry["holders"][holder] = record

    def unregister(self, model: str, link: str, holder: str) -> None:
        """Undo :meth:`register` after a failed load; the last holder also removes the link and snapshot."""
        with self.registry.editing() as document:
            models = document.get("models", {})
            entry = models.get(model, {"holders": {}})
            entry["holders"].pop(holder, None)
            if not entry["holders"]:
                models.pop(model, None)
                if os.path.islink(link):
                    os.unlink(link)
                model_snapshot.remove(self.registry.directory, entry.get("snapshot", ""))


def replace_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a new link made beside the repository, renamed over the old.

    The new link is made outside the repository so that the server never sees a half-made model name; its
    name is the model's (whose lock the caller holds: the agent's threads never share it).
    """
    if os.path.islink(link) and os.readlink(link) == target:
        return
    repository = os.path.dirname(link)
    os.makedirs(repository, exist_ok=True)
    temporary = os.path.join(os.path.dirname(repository), f".link.{os.path.basename(link)}.{os.getpid()}")
    os.symlink(target, temporary)
    os.replace(temporary, link)
