"""glidein-triton: a Triton Inference Server for the jobs of a GlideinWMS glidein.

The versions live here, each in one place: the package's, and the one Triton release the project builds,
pins and tests: the image definitions' defaults (apptainer/), the client pin and the docs follow
``TRITON_RELEASE``; tests/test_release.py finds any other (the verified CVMFS images of
glidein_triton/worker/images.py keep their own). And how to install the package with an extra, whose
wheel's name carries the version.
"""

__version__ = "0.1.0"

#: NGC container release (yy.mm) of the server image
TRITON_RELEASE = "24.10"
#: the Triton server version in that release (server/build.py's map): also the tritonclient pin, and the
#: version of the tritonserver binary of the nvidia-pytriton wheel the tests run
TRITON_VERSION = "2.51.0"


def install_hint(extra: str) -> str:
    """How to install glidein-triton with ``extra``: not on PyPI yet, so make dist's wheel or a checkout."""
    return (
        f"python3 -m pip install 'dist/glidein_triton-{__version__}-py3-none-any.whl[{extra}]' (after `make "
        f"dist` in a checkout or the unpacked sdist), or '.[{extra}]' there"
    )
