#!/bin/sh
# Every example, one after the other, as one job: run it through `glidein-triton local-job` (README.md).
set -e
cd "$(dirname "$0")"
python3 simple/add_sub.py
python3 image_classification/classify.py
python3 site_checks/health_metadata.py
python3 site_checks/grpc_keepalive.py
