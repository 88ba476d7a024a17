"""The reaper (run by the periodic script): forget jobs that are gone, unload models nobody holds.

GlideinWMS runs no post-job hooks, so a job never says it is done. Each periodic run:

1. adopts the claims that pre-jobs left in the job sandboxes under HTCondor's execute directory (inside a
   container that is a job's only record), so every live job is a holder in ``models.json``;
2. drops holders whose sandbox or process is gone (:func:`model_registry.holder_alive`);
3. for each model left without holders, under the model's lock (so no pre-job is registering for it),
   checks again, keeps the statistics (:class:`accounting.Usage`), unloads it and removes its link and its
   snapshot (:mod:`model_snapshot`). Models the operator loaded at start (GLIDEIN_TRITON_MODELS) are never
   unloaded. A claim that shows up for a model just unloaded (a containerised pre-job has no lock to take)
   gets the model loaded again, from its snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from glidein_triton.worker import model_registry, model_snapshot
from glidein_triton.worker.accounting import Usage, model_totals
from glidein_triton.worker.model_registry import LockTimeoutError, Registry, holder_alive
from glidein_triton.worker.state import JOB_REPOSITORY
from glidein_triton.worker.triton_api import Server, TritonAPIError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a periodic run ~4 ms to import
    from typing import Any

LOG = logging.getLogger(__name__)

MODEL_LOCK_WAIT = 2.0  # a pre-job holding the lock is loading the model: leave it to the next run
#: All the waits for model locks of one pass together: past it, the models left wait for the next run.
MODEL_LOCKS_BUDGET = 5.0


def live_claims(execute_dir: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(claim, holder record) of the valid claims in job sandboxes whose job is still there."""
    found = []
    for sandbox, claim, problem in model_registry.claims(execute_dir):
        if problem:
            LOG.warning("ignoring the claim in %s: %s", sandbox, problem)
            continue
        record = dict(claim["record"])
        record["sandbox"] = sandbox  # the path on this side, wherever the claim was written from
        if holder_alive(record):
            found.append((claim, record))
    return found


def adopt_claims(models: dict[str, dict[str, Any]], execute_dir: str) -> list[str]:
    """Add the holders of the live claims; returns the models that gained one."""
    gained = []
    for claim, record in live_claims(execute_dir):
        for model in claim["models"]:
            holders = models.setdefault(model, {"source": "", "holders": {}})["holders"]
            if claim["holder"] not in holders:
                holders[claim["holder"]] = record
                gained.append(model)
    return gained


def drop_gone(models: dict[str, dict[str, Any]]) -> int:
    """Remove holders that are gone; returns how many."""
    dropped = 0
    for entry in models.values():
        holders = entry.get("holders", {})
        for name in [name for name, record in holders.items() if not holder_alive(record)]:
            del holders[name]
            dropped += 1
    return dropped


def is_pinned(model: str, entry: dict[str, Any], pinned: Sequence[str]) -> bool:
    """A model the operator loaded at start: every model of the server's repository when ``*``."""
    return model in pinned or ("*" in pinned and not entry.get("source"))


def claimed(model: str, execute_dir: str) -> bool:
    return any(model in claim["models"] for claim, _ in live_claims(execute_dir))


class Reaper:
    """One reaping pass over a glidein's registry."""

    def __init__(self, registry: Registry, server: Server, execute_dir: str, pinned: Sequence[str]) -> None:
        self.registry = registry
        self.server = server
        self.execute_dir = execute_dir
        self.pinned = list(pinned)
        self.usage = Usage(registry)

    def refresh(self) -> list[str]:
        """Adopt claims and drop gone holders; returns the models that have no holder left."""
        with self.registry.editing() as document:
            models = document.setdefault("models", {})
            adopt_claims(models, self.execute_dir)
            dropped = drop_gone(models)
        if dropped:
            LOG.info("%d holders of models are gone", dropped)
        return sorted(name for name, entry in models.items() if not entry.get("holders"))

    def reap(self) -> list[str]:
        """The whole pass; returns the models unloaded."""
        if not self.registry.exists():
            return []
        unloaded = []
        deadline = time.monotonic() + MODEL_LOCKS_BUDGET
        for model in self.refresh():
            wait = min(MODEL_LOCK_WAIT, deadline - time.monotonic())
            if wait <= 0:
                LOG.info("model locks took too long in this pass: %s and the rest wait for the next", model)
                break
            try:
                with self.registry.model_lock(model, wait):
                    if self.release(model):
                        unloaded.append(model)
            except LockTimeoutError:
                LOG.info("model %s is being loaded by a pre-job: not reaped now", model)
        return unloaded

    def release(self, model: str) -> bool:
        """Under the model's lock: unload ``model`` if it still has no holder; True when it was unloaded."""
        with self.registry.editing() as document:
            models = document.setdefault("models", {})
            adopt_claims(models, self.execute_dir)
            drop_gone(models)
            entry = models.get(model)
            if entry is None or entry.get("holders"):
                return False
            del models[model]
        if is_pinned(model, entry, self.pinned):
            return False
        try:
            self.usage.retire(model, model_totals(self.server.model_statistics(model)))
        except TritonAPIError as error:
            LOG.info("no statistics for %s before unloading it: %s", model, error)
        try:
            self.server.unload(model)
        except TritonAPIError as error:
            LOG.warning("could not unload %s: %s", model, error)
        link = Path(self.registry.directory, JOB_REPOSITORY, model)
        if entry.get("source") and link.is_symlink():
            link.unlink()
        LOG.info("unloaded %s: no job holds it any more", model)
        if claimed(model, self.execute_dir):
            self.repair(model, entry)
        else:
            model_snapshot.remove(self.registry.directory, entry.get("snapshot", ""))
        return True

    def repair(self, model: str, entry: dict[str, Any]) -> None:
        """A job claimed ``model`` while it was being unloaded: put it back."""
        LOG.warning("a job claimed %s while it was unloaded: loading it again", model)
        link = Path(self.registry.directory, JOB_REPOSITORY, model)
        snapshot = entry.get("snapshot", "")
        if entry.get("source") and not model_snapshot.is_snapshot(self.registry.directory, snapshot):
            LOG.error("no snapshot of %s left to load again", model)
            return
        if entry.get("source") and not link.is_symlink():
            link.symlink_to(snapshot)  # the snapshot vetted when it was loaded, never the source
        with self.registry.editing() as document:
            models = document.setdefault("models", {})
            models[model] = {**entry, "holders": {}}
            adopt_claims(models, self.execute_dir)
        try:
            self.server.load(model, timeout=60.0)
        except TritonAPIError as error:
            LOG.error("could not load %s again: %s", model, error)
