# The same image as tritonclient.def, as an OCI image for a registry (CVMFS publishes from registries).
# Build from the repository root:  docker build -f apptainer/tritonclient.Dockerfile -t <registry>/tritonclient .
# (.dockerignore keeps .venv, .git and build outputs out of the context.) TRITONCLIENT_VERSION follows
# glidein_triton/__init__.py; tritonclient 2.51.0 needs numpy < 2, which has no wheels for Python >= 3.13.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim
ARG TRITONCLIENT_VERSION=2.51.0
ARG NUMPY_VERSION=1.26.4
COPY glidein_triton/__init__.py /opt/glidein-triton/glidein_triton/
COPY glidein_triton/job/__init__.py glidein_triton/job/client.py glidein_triton/job/pool.py /opt/glidein-triton/glidein_triton/job/
COPY glidein_triton/worker/__init__.py glidein_triton/worker/sandbox_protocol.py /opt/glidein-triton/glidein_triton/worker/
COPY examples /opt/glidein-triton/examples
RUN python3 -c 'import sys; sys.exit(sys.version_info >= (3, 13))' \
        || { echo "numpy < 2 (tritonclient ${TRITONCLIENT_VERSION}) has no wheels for Python >= 3.13: use PYTHON_VERSION=3.12" >&2; exit 1; } \
    && python3 -m pip install --no-cache-dir \
        "tritonclient[grpc,http]==${TRITONCLIENT_VERSION}" "numpy==${NUMPY_VERSION}" \
    && echo /opt/glidein-triton > "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/glidein-triton.pth" \
    && python3 -m compileall -q /opt/glidein-triton \
    && python3 -c 'import numpy, tritonclient.grpc, tritonclient.http, glidein_triton.job.client'
LABEL org.opencontainers.image.title="glidein-triton client"
