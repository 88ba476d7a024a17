#!/bin/sh
# glidein-triton pre-job hook, installed by the startup script as .gwms.d/exec/prejob/glidein_triton_1_prejob.sh.
# GlideinWMS's job wrapper runs it before each job as ./glidein_triton_1_prejob.sh <glidein_config>, inside
# the job's container when there is one (cwd: its own directory; the job's sandbox at /srv) and ignores its
# exit code. POSIX sh: a job container may have no bash. See docs/hooks.md.

# Nothing asked for (most jobs): done, without starting Python.
if [ -z "$TRITON_MODELS$TRITON_JOB_MODEL_REPOSITORY" ] \
    && ! grep -qiE '^[[:space:]]*Triton(Models|ModelRepository)[[:space:]]*=' "${_CONDOR_JOB_AD:-/dev/null}" 2> /dev/null; then
    exit 0
fi

fail() {
    # $1: why the hook cannot run; tell the job through its stderr and its environment file.
    echo "glidein-triton pre-job: $1" >&2
    if [ -n "$_CONDOR_SCRATCH_DIR" ] && mkdir -p "$_CONDOR_SCRATCH_DIR/.glidein_triton" 2> /dev/null; then
        printf 'TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=all\nTRITON_MODELS_STATUS=failed\n' \
            > "$_CONDOR_SCRATCH_DIR/.glidein_triton/prejob.env"
    fi
    exit 1
}

# The value of key $1 in glidein_config $2: the rest of its last line (the last line of a key wins).
config_value() { awk -v key="$1 " 'index($0, key) == 1 { value = substr($0, length(key) + 1) } END { print value }' "$2" 2> /dev/null; }

# The code: a copy in .gwms.d/lib (copied into job containers with .gwms.d), else the glidein's own.
case "$0" in
    */*) here=${0%/*} ;;
    *) here=. ;;
esac
code="$here/../../lib/glidein_triton"
python=""
if [ -f "$code/glidein_triton/worker/prejob.py" ]; then
    [ -r "$code/python" ] && read -r python < "$code/python"
else
    code=$(config_value GLIDEIN_TRITON_CODE_DIR "$1")
    python=$(config_value GLIDEIN_TRITON_PYTHON "$1")
    [ -f "$code/glidein_triton/worker/prejob.py" ] || fail "worker code not found next to $0 nor in $1"
fi
# The host's Python may not exist in the job's container: then the container's own.
if [ ! -x "$python" ]; then
    python=""
    for candidate in python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
        python=$(command -v "$candidate" 2> /dev/null) && break
    done
fi
[ -n "$python" ] || fail "no python3 found (Python >= 3.9 is needed); models not loaded"

# The job wrapper's shell (our parent) becomes the job: its pid tells the reaper when the job is gone.
GLIDEIN_TRITON_WRAPPER_PID=$PPID "$python" -I -S -c 'import sys
if sys.version_info < (3, 9):
    sys.exit(3)
sys.path.insert(0, sys.argv.pop(1))
from glidein_triton.worker.prejob import main
sys.exit(main())' "$code" "$@"
status=$?
[ "$status" -ne 3 ] || fail "$python is older than Python 3.9; models not loaded"
exit "$status"
