"""glidein-triton: a Triton Inference Server for the jobs of a GlideinWMS glidein."""

__version__ = "0.1.0"
