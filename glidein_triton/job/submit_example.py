"""``glidein-triton submit-example``: a submit description and job script for a job that uses Triton.

The job asks the frontend for a glidein with Triton (``+RequiresTriton``), matches only slots whose server
is up (``Requirements`` on ``HasTriton``, and ``TritonGPUs > 0`` with ``--gpu``), runs in a client image on
CVMFS (``+SingularityImage``) or in the glidein's default image, and names the models the glidein's pre-job
hook loads (``+TritonModels``, ``+TritonModelRepository``). It never sets ``+REQUIRED_OS``: the job wrapper
looks that key up in SINGULARITY_IMAGES_DICT and, under the default SINGULARITY_IMAGE_RESTRICTIONS=cvmfs,
refuses anything but a CVMFS path.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from glidein_triton.worker.word_rules import MODEL_NAME_RULE, is_model_name, plain_text

SUBMIT_FILE = "triton_job.sub"
JOB_SCRIPT = "triton_job.py"
#: GlideinWMS's default SINGULARITY_IMAGE_RESTRICTIONS (cvmfs) accepts only job images under /cvmfs.
CVMFS = "/cvmfs/"
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UNSAFE_IN_STRING = re.compile(r"[\"\\\n\r]")


@dataclass(frozen=True)
class JobRequest:
    """What the job asks for."""

    #: no default: a real glidein serves the models of its VO, not the bundled test model ``simple``
    models: tuple[str, ...] = ()
    image: str = ""
    model_repository: str = ""
    gpu: bool = False
    min_version: str = ""

    def check(self) -> None:
        """ValueError naming the first value that cannot go into the submit description."""
        if not self.models:
            raise ValueError("name the models the job uses: --models my_model[,other_model]")
        for name in self.models:
            if not is_model_name(name):
                raise ValueError(f"model name {name!r} is not allowed ({MODEL_NAME_RULE})")
        for option, value in (("--image", self.image), ("--model-repository", self.model_repository)):
            if UNSAFE_IN_STRING.search(value):
                raise ValueError(f"{option} {value!r} must not contain quotes, backslashes or line breaks")
        if self.image and not self.image.startswith(CVMFS):
            raise ValueError(
                f"--image {self.image!r} is not under {CVMFS}: GlideinWMS's job wrapper refuses other images "
                "under its default SINGULARITY_IMAGE_RESTRICTIONS=cvmfs (docs/images.md)"
            )
        if self.min_version and not VERSION.match(self.min_version):
            raise ValueError(f"--min-version {self.min_version!r} is not a version such as 2.40")


def requirements(request: JobRequest) -> str:
    """The job's Requirements: a slot of a glidein whose Triton server is up (with GPUs, of a version)."""
    terms = ["TARGET.HasTriton =?= True", "TARGET.TritonGRPCURL =!= undefined"]
    if request.gpu:
        terms.append("TARGET.TritonGPUs > 0")
    if request.min_version:
        terms.append(f'versioncmp(TARGET.TritonVersion, "{request.min_version}") >= 0')
    return " && ".join(terms)


def submit_description(request: JobRequest) -> str:
    """The submit description text."""
    request.check()
    if request.image:
        image = [
            "# The job runs in the slim client image (python3, numpy, tritonclient).",
            f'+SingularityImage = "{request.image}"',
        ]
    else:
        image = [
            "# No image named: the job runs in the glidein's default image, which needs python3 with numpy",
            '# and tritonclient (or name a client image on CVMFS: +SingularityImage = "/cvmfs/...").',
        ]
    models = ["# Models the glidein's pre-job hook loads into the server before the job starts."]
    models.append(f'+TritonModels = "{",".join(request.models)}"')
    if request.model_repository:
        models.append(f'+TritonModelRepository = "{request.model_repository}"')
    lines = [
        "# A job that uses the Triton Inference Server of its glidein (glidein-triton).",
        "# Written by `glidein-triton submit-example`; see docs/user-guide.md.",
        f"# Submit with: condor_submit {SUBMIT_FILE}",
        "universe = vanilla",
        f"executable = {JOB_SCRIPT}",
        f"arguments = {' '.join(request.models)}",
        *image,
        "# Ask for a glidein with Triton, and match only slots whose server is up.",
        "+RequiresTriton = True",
        *(
            [
                "# Only from entries that give their glideins GPUs (the frontend matches on it).",
                "+RequiresTritonGPU = True",
            ]
            if request.gpu
            else []
        ),
        f"requirements = {requirements(request)}",
        *models,
        "# The job itself needs no GPU, and must not request_gpus: the server owns the GPUs.",
        "request_cpus = 1",
        "request_memory = 2 GB",
        "request_disk = 1 GB",
        "should_transfer_files = YES",
        "when_to_transfer_output = ON_EXIT",
        "output = triton_job.$(Cluster).$(Process).out",
        "error = triton_job.$(Cluster).$(Process).err",
        "log = triton_job.$(Cluster).log",
        "queue",
    ]
    return "\n".join(lines) + "\n"


def job_script() -> str:
    """The example job script shipped with the package."""
    return (resources.files("glidein_triton.job") / "templates" / JOB_SCRIPT).read_text()


def write(directory: Path, request: JobRequest, force: bool = False) -> list[Path]:
    """Write the submit description and the job script into ``directory``; nothing is written on error."""
    contents = {directory / SUBMIT_FILE: submit_description(request), directory / JOB_SCRIPT: job_script()}
    existing = [str(path) for path in contents if path.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); use --force to replace")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in contents.items():
        path.write_text(text)
    (directory / JOB_SCRIPT).chmod(0o755)
    return list(contents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glidein-triton submit-example",
        description=plain_text(__doc__.split("\n")[0]) if __doc__ else None,
    )
    parser.add_argument("--directory", type=Path, default=Path(), help="where to write (default: here)")
    parser.add_argument(
        "--image",
        default="",
        help="path of the client image on CVMFS (default: none, the glidein's default image)",
    )
    parser.add_argument(
        "--models",
        required=True,
        help="models the job uses, comma separated (the bundled test model is 'simple', for local-job only)",
    )
    parser.add_argument("--model-repository", default="", help="repository of those models (e.g. on CVMFS)")
    parser.add_argument("--gpu", action="store_true", help="match only glideins whose server has GPUs")
    parser.add_argument("--min-version", default="", help="lowest Triton version, e.g. 2.40")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    request = JobRequest(
        models=tuple(name for name in re.split(r"[,\s]+", args.models) if name),
        image=args.image,
        model_repository=args.model_repository,
        gpu=args.gpu,
        min_version=args.min_version,
    )
    try:
        written = write(args.directory, request, args.force)
    except (ValueError, FileExistsError) as error:
        print(f"submit-example: {error}", file=sys.stderr)
        return 1
    print("wrote " + " and ".join(str(path) for path in written))
    return 0
