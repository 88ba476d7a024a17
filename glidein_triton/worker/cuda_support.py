"""Which NVIDIA driver a Triton server image needs: release -> CUDA version -> minimum driver.

Sources (NVIDIA's published documents, read for these facts):

* ``TRITON_CUDA``: the "Driver Requirements" section of each Triton Inference Server container release note
  (docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-YY-MM.html), "Release YY.MM is
  based on CUDA X.Y.Z". Only releases whose note names the CUDA version are listed; a release that is not
  here is reported as unknown rather than guessed.
* ``TOOLKIT_DRIVERS``: Table 3 "CUDA Toolkit and Corresponding Driver Versions" (Linux x86_64) of the CUDA
  Toolkit release notes (docs.nvidia.com/cuda/cuda-toolkit-release-notes/): the driver that has every feature
  of that CUDA version. Later Triton notes print a lower "requires driver release" figure than this table;
  the table is the stricter, and it is what a driver at or above it is sure to satisfy.
* ``MINOR_COMPATIBILITY``: Table 1 of NVIDIA's "CUDA Compatibility" guide, minor version compatibility
  (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html): an application built with
  CUDA 12.x runs, with a limited feature set (no PTX JIT of newer code), on any driver >= 525; 13.x on >= 580.
* Data center GPUs can also run a newer CUDA on an older driver through the CUDA forward-compatibility
  package (cuda-compat) on supported driver branches. Whether that applies depends on the GPU and the
  driver branch, so it is mentioned, never assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Triton container release -> the CUDA version its release note names.
TRITON_CUDA = {
    "23.04": "12.1.0",
    "23.05": "12.1.1",
    "23.06": "12.1.1",
    "23.07": "12.1.1",
    "23.08": "12.2.1",
    "23.09": "12.2.1",
    "23.10": "12.2.2",
    "23.11": "12.3.0",
    "23.12": "12.3.2",
    "24.01": "12.3.2",
    "24.04": "12.4.0",  # the note says "CUDA 12.4": the GA row of the driver table
    "24.05": "12.4.0",
    "24.06": "12.5.0",
    "24.07": "12.5.1",
    "24.08": "12.6.0",  # "CUDA 12.6"
    "24.10": "12.6.2",
    "24.12": "12.6.3",
    "25.02": "12.8.0",
    "25.03": "12.8.1",
    "25.04": "12.9.0",
    "25.06": "12.9.1",
    "25.08": "13.0.0",
    "25.10": "13.0.2",
    "26.02": "13.1.1",
}

#: CUDA version -> the minimum Linux x86_64 driver with all its features (CUDA release notes, Table 3).
#: An update release X.Y.N uses the row of that update ("12.3.2" has no row of its own: 12.3 Update 1's).
TOOLKIT_DRIVERS = {
    "12.1.0": "530.30.02",
    "12.1.1": "530.30.02",
    "12.2.1": "535.86.09",
    "12.2.2": "535.104.05",
    "12.3.0": "545.23.06",
    "12.3.2": "545.23.08",
    "12.4.0": "550.54.14",
    "12.5.0": "555.42.02",
    "12.5.1": "555.42.06",
    "12.6.0": "560.28.03",
    "12.6.2": "560.35.03",
    "12.6.3": "560.35.05",
    "12.8.0": "570.26",
    "12.8.1": "570.124.06",
    "12.9.0": "575.51.03",
    "12.9.1": "575.57.08",
    "13.0.0": "580.65.06",
    "13.0.2": "580.95.05",
    "13.1.1": "590.48.01",
}

#: CUDA major version -> the oldest driver branch that runs it through minor version compatibility.
MINOR_COMPATIBILITY = {"12": "525", "13": "580"}

FORWARD_COMPATIBILITY_NOTE = (
    "data center GPUs (A100, H100, L40S, ...) may still run it through the CUDA forward-compatibility "
    "package on supported driver branches; this check cannot tell: try a test glidein, or use an image of "
    "an older release"
)

RELEASE = re.compile(r"(?<![\d.])(\d{2})\.(\d{2})(?![\d])")


def release_from_image(image: str) -> str:
    """The Triton release ``yy.mm`` named in an image path or URI (the last such pair), or ``""``."""
    found = ""
    for match in RELEASE.finditer(image):
        if 1 <= int(match.group(2)) <= 12:
            found = f"{match.group(1)}.{match.group(2)}"
    return found


def valid_release(text: str) -> bool:
    """Whether ``text`` is a release number ``yy.mm``."""
    return bool(re.fullmatch(r"\d{2}\.\d{2}", text)) and 1 <= int(text[3:]) <= 12


def version_tuple(version: str) -> tuple[int, ...]:
    """``"570.124.06"`` -> ``(570, 124, 6)``; a part that is not a number ends the tuple."""
    parts = []
    for part in version.strip().split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


@dataclass(frozen=True)
class DriverVerdict:
    """Whether a driver runs a release: ``ok``, ``warn`` (limited compatibility), ``fail`` or ``unknown``."""

    status: str
    message: str


def judge(driver: str, release: str) -> DriverVerdict:
    """Compare a driver version with what the CUDA of Triton ``release`` needs."""
    cuda = TRITON_CUDA.get(release, "")
    if not cuda:
        return DriverVerdict(
            "unknown",
            f"Triton {release} is not in the release table ({min(TRITON_CUDA)} to {max(TRITON_CUDA)}, where "
            f"NVIDIA's notes name the CUDA): compare driver {driver} with its release notes",
        )
    needed = TOOLKIT_DRIVERS[cuda]
    have = version_tuple(driver)
    if have >= version_tuple(needed):
        return DriverVerdict("ok", f"driver {driver} >= {needed}, needed by CUDA {cuda} of Triton {release}")
    floor = MINOR_COMPATIBILITY.get(cuda.split(".")[0], needed)
    if have >= version_tuple(floor):
        return DriverVerdict(
            "warn",
            f"driver {driver} is older than {needed} (CUDA {cuda} of Triton {release}); it runs through "
            f"CUDA minor version compatibility (driver >= {floor}), without PTX JIT of newer code",
        )
    return DriverVerdict(
        "fail",
        f"driver {driver} is too old for CUDA {cuda} of Triton {release} (needs >= {needed}, at least "
        f"{floor} with minor version compatibility); {FORWARD_COMPATIBILITY_NOTE}",
    )
