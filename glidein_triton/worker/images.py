"""Server images: the maintained copies on CVMFS, and what a remote (``docker://``...) image costs.

Every path in ``CVMFS_SERVER_IMAGES`` was read from a public source (named by each entry), never guessed:

* ``singularity.opensciencegrid.org/ml4gw/hermes/tritonserver:<tag>``: OSG's cvmfs-singularity-sync
  (opensciencegrid/cvmfs-singularity-sync, ``docker_images.txt`` lists ``ghcr.io/ml4gw/hermes/tritonserver``
  with these tags); ML4GW hermes builds them ``FROM nvcr.io/nvidia/tritonserver:<tag>-py3``, so they are the
  plain NGC server images, unpacked as sandbox directories.
* ``unpacked.cern.ch/registry.hub.docker.com/fastml/triton-torchgeo:22.07-py3-geometric``: CMS SONIC's
  default server (cms-sw/cmssw, HeterogeneousCore/SonicTriton/scripts/cmsTriton), a custom build with the
  ensemble, python, pytorch, onnxruntime and tensorflow backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import failure_messages

#: What Apptainer fetches (and converts into a SIF) at run time, rather than opening in place.
REMOTE_SCHEMES = ("docker://", "oras://", "library://", "shub://", "http://", "https://", "docker-archive:")


@dataclass(frozen=True)
class KnownImage:
    path: str
    triton: str
    container: str
    source: str


HERMES = "/cvmfs/singularity.opensciencegrid.org/ml4gw/hermes/tritonserver"
HERMES_SOURCE = "OSG cvmfs-singularity-sync docker_images.txt: ghcr.io/ml4gw/hermes/tritonserver (NGC image)"
CVMFS_SERVER_IMAGES = (
    KnownImage(f"{HERMES}:24.01", "2.42", "24.01", HERMES_SOURCE),
    KnownImage(f"{HERMES}:23.01", "2.30", "23.01", HERMES_SOURCE),
    KnownImage(f"{HERMES}:22.12", "2.29", "22.12", HERMES_SOURCE),
    KnownImage(f"{HERMES}:22.07", "2.24", "22.07", HERMES_SOURCE),
    KnownImage(f"{HERMES}:22.02", "2.19", "22.02", HERMES_SOURCE),
    KnownImage(
        "/cvmfs/unpacked.cern.ch/registry.hub.docker.com/fastml/triton-torchgeo:22.07-py3-geometric",
        "2.24",
        "22.07",
        "CMS SONIC's default (cms-sw/cmssw cmsTriton); custom build with PyTorch Geometric",
    ),
)
#: The newest maintained CVMFS copy: the only one whose Triton has every option the plugin knows
#: (--model-load-retry-count needs 2.42).
DEFAULT_SERVER_IMAGE = CVMFS_SERVER_IMAGES[0].path
NO_IMAGE = failure_messages.NO_SERVER_IMAGE.format(
    image=DEFAULT_SERVER_IMAGE, release=CVMFS_SERVER_IMAGES[0].triton
)
APPTAINER_DIRECTORY = "apptainer"
#: the glidein_config key of the VO's images (GlideinWMS's own), and its key for the server image
IMAGES_DICT = "SINGULARITY_IMAGES_DICT"
SERVER_IMAGE_KEY = "tritonserver"


def images_dict_items(value: str) -> list[tuple[str, str]]:
    """SINGULARITY_IMAGES_DICT's ``key:path,key2:path2`` as (key, path) pairs, every item in order (a path
    "" when it has no colon); each item splits on its first colon only (a path may have colons)."""
    pairs = []
    for item in value.split(","):
        key, _, path = item.partition(":")
        if item.strip():
            pairs.append((key.strip(), path.strip()))
    return pairs


def images_dict(value: str) -> dict[str, str]:
    """The images of SINGULARITY_IMAGES_DICT by key: the items with a key and a path (the last one wins)."""
    return {key: path for key, path in images_dict_items(value) if key and path}


def images_dict_text(pairs: list[tuple[str, str]]) -> str:
    """(key, path) pairs as SINGULARITY_IMAGES_DICT writes them (an item without a path as its key)."""
    return ",".join(f"{key}:{path}" if path else key for key, path in pairs)


def is_remote(image: str) -> bool:
    """Whether Apptainer must download and convert ``image`` on the node."""
    return image.startswith(REMOTE_SCHEMES)


def remote_warning(image: str) -> str:
    """What a remote image costs on a worker node, for factory-xml, frontend-xml and check."""
    return (
        f"{image} is a remote image: every glidein downloads and converts it (GBs, internet access, minutes, "
        "disk under GLIDEIN_LOCAL_TMP_DIR) before the server starts, within "
        "GLIDEIN_TRITON_INSTANCE_START_TIMEOUT; use an image on CVMFS, e.g. "
        f"{DEFAULT_SERVER_IMAGE} (docs/images.md)"
    )


def conversion_environment(config: Mapping[str, str], environment: Mapping[str, str]) -> dict[str, str]:
    """APPTAINER_CACHEDIR and APPTAINER_TMPDIR (and the SINGULARITY_ names) as GlideinWMS's singularity_exec
    sets them: ``<GLIDEIN_LOCAL_TMP_DIR>/apptainer/{cache,tmp}``, created here; a value already in the
    environment is kept. Nothing without GLIDEIN_LOCAL_TMP_DIR."""
    local_tmp = config.get("GLIDEIN_LOCAL_TMP_DIR", "").strip()
    if not local_tmp:
        return {}
    root = Path(local_tmp) / APPTAINER_DIRECTORY
    cache = environment.get("APPTAINER_CACHEDIR", str(root / "cache"))
    tmp = environment.get("APPTAINER_TMPDIR", str(root / "tmp"))
    for directory in (cache, tmp):
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
    return {
        "APPTAINER_CACHEDIR": cache,
        "APPTAINER_TMPDIR": tmp,
        "SINGULARITY_CACHEDIR": cache,
        "SINGULARITY_TMPDIR": tmp,
    }
