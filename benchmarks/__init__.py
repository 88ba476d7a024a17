"""Benchmarks of glidein-triton: `python -m benchmarks` runs them all and writes docs/benchmarks.md."""
