"""The GPU check: what a person with a GPU node runs, in minutes, to see the GPU path work for real.

    python -m benchmarks.gpu_check [--json] [--tritonserver PATH] [--seconds S] [--no-gpu]

1. nvidia-smi (the real one): the GPUs, their compute capability and driver, MIG slices.
2. The server on them, started by the real startup script in a simulated glidein of a GPU entry
   (GLIDEIN_TRITON_ENTRY_GPUS, ``GLIDEIN_Resource_Slots = GPUs,type=main``), process runtime with the
   CUDA_VISIBLE_DEVICES the plugin gives it (what ``--nv`` gives a container): a KIND_GPU model must load
   and TritonGPUs (from the GPUs the server initialised) must be at least 1.
3. Ownership: the startd's view of the GPUs after the startup script (modelled on condor_startup.sh), a
   ``request_gpus = 1`` job ad and a Triton GPU job ad, matched with classad2.
4. Sharing: 8 and 32 jobs sending inference to the GPU server (models/mlp_gpu, PyTorch with CUDA) against
   the same jobs each running the model in-process on the CPU; the goal is >= 5x at 8 jobs.
5. MIG, when a GPU has slices: the server gets one slice, the others are counted idle.

Without nvidia-smi (or with ``--no-gpu``) the GPU steps are skipped, each saying why, and the ownership rule
is checked on an example node. Exit code 1 when a step that ran failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import classad2

from glidein_triton.local import demo, startd_gpus
from glidein_triton.worker import gpu_ownership, gpu_selection, gpus
from glidein_triton.worker.gpus import GPU

from . import sharing

HERE = Path(__file__).resolve().parent
SHARING_GOAL = 5.0
SHARING_JOBS = (8, 32)
GPU_ENTRY = {"GLIDEIN_TRITON_ENTRY_GPUS": "True", "GLIDEIN_Resource_Slots": "GPUs,type=main"}
REQUEST_GPUS_JOB = "RequestGPUs = 1\nRequirements = (TARGET.GPUs >= MY.RequestGPUs)\n"
TRITON_GPU_JOB = "RequestGPUs = 0\nRequirements = (TARGET.HasTriton =?= True) && (TARGET.TritonGPUs > 0)\n"
EXAMPLE_NODE = [GPU(0, "GPU-00000000-0000-0000-0000-000000000000", "example GPU (no GPU here)", 0, "")]


@dataclass
class Step:
    """One step's outcome: ``ok``, ``fail`` or ``skipped``."""

    name: str
    status: str
    summary: str
    details: dict[str, object] = field(default_factory=dict)


@dataclass
class Node:
    """What the steps share: the GPUs found, and what the server step published."""

    every: list[GPU] = field(default_factory=list)
    visible: list[GPU] = field(default_factory=list)
    published: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)


def find_gpus(node: Node, environment: Mapping[str, str], no_gpu: bool) -> Step:
    nvidia_smi = None if no_gpu else shutil.which("nvidia-smi", path=environment.get("PATH"))
    if nvidia_smi is None:
        why = "--no-gpu" if no_gpu else "no nvidia-smi on PATH"
        return Step("nvidia-smi", "skipped", f"{why}: no GPU steps")
    try:
        node.every = gpus.devices(*gpus.query_all(nvidia_smi))
    except gpus.QUERY_ERRORS as error:
        return Step("nvidia-smi", "fail", f"nvidia-smi failed: {error}")
    node.visible = gpus.visible_devices(node.every, environment)
    listed = [
        f"{gpu.uuid}: {gpu.label}, cc {gpu.compute_capability}, driver {gpu.driver}" for gpu in node.every
    ]
    return Step(
        "nvidia-smi", "ok", f"{len(node.every)} devices, {len(node.visible)} visible", {"devices": listed}
    )


def gpu_repository(root: Path) -> Path:
    """The bundled models plus ``simple_gpu``, a KIND_GPU copy of the demo model."""
    repository = root / "gpu_models"
    shutil.copytree(demo.MODELS_DIR, repository)
    (repository / "simple_gpu" / "1").mkdir(parents=True)
    shutil.copyfile(repository / "simple" / "1" / "model.py", repository / "simple_gpu" / "1" / "model.py")
    text = (repository / "simple" / "config.pbtxt").read_text()
    (repository / "simple_gpu" / "config.pbtxt").write_text(
        text.replace('name: "simple"', 'name: "simple_gpu"').replace("KIND_CPU", "KIND_GPU")
    )
    return repository


def start_gpu_server(
    node: Node, root: Path, environment: Mapping[str, str], server_settings: Mapping[str, str]
) -> Step:
    """The real startup script on a GPU entry; the published attributes and final glidein_config kept."""
    if not node.visible:
        return Step("server", "skipped", "no GPU visible to this glidein")
    settings = {
        **GPU_ENTRY,
        "GLIDEIN_TRITON_MODEL_REPOSITORY": str(gpu_repository(root)),
        "GLIDEIN_TRITON_MODELS": "simple,simple_gpu",
        **server_settings,
    }
    prepared = demo.prepare(root / "glidein", settings=settings)
    prepared.environment.update(environment)
    result = prepared.glidein.run_startup(prepared.environment)
    try:
        node.published, _ = prepared.glidein.published()
        node.config = prepared.glidein.config()
    finally:
        prepared.glidein.run_cleanup(prepared.environment)
    used = int(node.published.get("TritonGPUs", "0") or 0)
    details = {key: value for key, value in node.published.items() if key.startswith("Triton")}
    failed = node.published.get("TritonFailedModels", "").strip('"')
    if result.metrics.get("HasTriton") != "True":
        return Step("server", "fail", f"no server: {result.metrics.get('TritonFailureDetail', '')}", details)
    if used < 1 or "simple_gpu" in failed:
        return Step("server", "fail", f"TritonGPUs = {used}, failed models: {failed or 'none'}", details)
    return Step("server", "ok", f"TritonGPUs = {used}; the KIND_GPU model loaded", details)


def check_ownership(node: Node) -> Step:
    """No slot of the startd gives a GPU to a request_gpus job; the Triton GPU job matches the server."""
    if node.published and node.published.get("TritonGPUs", "0") in ("", "0"):
        return Step("ownership", "skipped", "the server uses no GPU here: the startd keeps them")
    if node.published:
        config, devices, published = node.config, node.every, node.published
        where = "this node, after the startup script"
    else:
        config = dict(GPU_ENTRY)
        config.update(gpu_ownership.startd_values(config, server_gpus=1))
        devices, published = EXAMPLE_NODE, {"HasTriton": "True", "TritonGPUs": "1"}
        where = "example node: one GPU, the server on it (no server ran here)"
    slots = startd_gpus.slots(config, devices)
    ads = [classad2.parseOne(slot.ad(published)) for slot in slots]
    stolen = any(ad.symmetricMatch(classad2.parseOne(REQUEST_GPUS_JOB)) for ad in ads)
    served = any(ad.symmetricMatch(classad2.parseOne(TRITON_GPU_JOB)) for ad in ads)
    details = {
        "GLIDEIN_Resource_Slots": config.get("GLIDEIN_Resource_Slots", ""),
        "slot_gpus": [s.gpus for s in slots],
    }
    if stolen or not served:
        summary = f"{where}: request_gpus job matches {stolen}, Triton GPU job matches {served}"
        return Step("ownership", "fail", summary, details)
    return Step("ownership", "ok", f"{where}: the startd gives no GPU; TritonGPUs matches", details)


def measure_sharing(node: Node, seconds: float, server_settings: Mapping[str, str]) -> Step:
    if not node.visible:
        return Step("sharing", "skipped", "no GPU visible to this glidein")
    try:
        import torch  # noqa: PLC0415 (only this step needs it, and only on a GPU node)
    except ImportError:
        return Step("sharing", "skipped", "no PyTorch: models/mlp_gpu needs it (pip install torch)")
    if not torch.cuda.is_available():
        return Step("sharing", "skipped", "PyTorch sees no CUDA device")
    settings = {**GPU_ENTRY, **server_settings}
    results = sharing.run(SHARING_JOBS, seconds, repeats=1, model="mlp_gpu", settings=settings, bare=False)
    rates = {(result.mode, result.jobs): result.throughput for result in results}
    ratios = {jobs: rates[("server", jobs)] / rates[("in-process", jobs)] for jobs in SHARING_JOBS}
    details = {
        f"{jobs} jobs": f"{ratios[jobs]:.1f}x ({rates[('server', jobs)]:.0f}/s)" for jobs in SHARING_JOBS
    }
    status = "ok" if ratios[SHARING_JOBS[0]] >= SHARING_GOAL else "fail"
    return Step(
        "sharing", status, f"{ratios[SHARING_JOBS[0]]:.1f}x the in-process CPU rate at 8 jobs", details
    )


def check_mig(
    node: Node, root: Path, environment: Mapping[str, str], server_settings: Mapping[str, str]
) -> Step:
    parents = [gpu for gpu in node.every if gpu.mig_profile]
    if not parents:
        return Step("mig", "skipped", "no MIG slices on this node")
    slices = [gpu for gpu in parents if gpu.parent_uuid == parents[0].parent_uuid]
    chosen = gpu_selection.select(slices, {"CUDA_VISIBLE_DEVICES": parents[0].parent_uuid}, "", [])
    mig_node = Node(node.every, slices)
    step = start_gpu_server(
        mig_node,
        root / "mig",
        {**environment, "CUDA_VISIBLE_DEVICES": parents[0].parent_uuid},
        server_settings,
    )
    idle = mig_node.published.get("TritonGPUsIdle", "")
    details = {"slices": len(slices), "server": step.summary, "TritonGPUsIdle": idle}
    if step.status != "ok" or idle != str(len(slices) - 1) or len(chosen.devices) != 1:
        return Step("mig", "fail", f"one slice expected in use, {len(slices) - 1} idle", details)
    return Step("mig", "ok", f"one slice of {len(slices)} in use, {idle} idle", details)


def run(
    environment: Mapping[str, str], no_gpu: bool, seconds: float, server_settings: Mapping[str, str]
) -> list[Step]:
    node = Node()
    steps = [find_gpus(node, environment, no_gpu)]
    with tempfile.TemporaryDirectory(prefix="glidein-triton-gpu-check-") as directory:
        root = Path(directory)
        later: list[Callable[[], Step]] = [
            lambda: start_gpu_server(node, root / "server", environment, server_settings),
            lambda: check_ownership(node),
            lambda: measure_sharing(node, seconds, server_settings),
            lambda: check_mig(node, root, environment, server_settings),
        ]
        steps += [step() for step in later]
    return steps


def show(steps: Sequence[Step]) -> str:
    lines = []
    for step in steps:
        lines.append(f"{step.status:8}{step.name:12}{step.summary}")
        lines += [f"{'':20}{key}: {value}" for key, value in step.details.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print the steps as JSON")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU steps even where there is a GPU")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each sharing round")
    parser.add_argument(
        "--tritonserver", default="", help="a tritonserver (default: the nvidia-pytriton one)"
    )
    args = parser.parse_args(argv)
    server_settings = {"GLIDEIN_TRITON_SERVER_BINARY": args.tritonserver} if args.tritonserver else {}
    steps = run(os.environ, args.no_gpu, args.seconds, server_settings)
    print(json.dumps([asdict(step) for step in steps], indent=2) if args.json else show(steps))
    return 1 if any(step.status == "fail" for step in steps) else 0


if __name__ == "__main__":
    sys.exit(main())
