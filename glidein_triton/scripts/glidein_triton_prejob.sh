#!/bin/sh
# glidein-triton pre-job hook, installed by the startup script as .gwms.d/exec/prejob/glidein_triton_1_prejob.sh.
# GlideinWMS's job wrapper runs it before each job as ./glidein_triton_1_prejob.sh <glidein_config>, inside
# the job's container when there is one, and ignores its exit code. POSIX sh only, no Python: a job container
# may have neither bash nor Python. See docs/hooks.md.
#
# The glidein's agent, on the host, notices the job's sandbox, writes "pending" (how many seconds it may
# take) into $_CONDOR_SCRATCH_DIR/.glidein_triton, loads the models the job ad asks for,
# and writes its answer there (prejob.env). This waits for the answer, bounded; the sourced
# glidein_triton_2_prejob_env.sh exports it.

# What this writes into the job's sandbox is for the job alone, whatever umask the glidein started with.
umask 077

# Nothing asked for (most jobs): done at once.
if ! grep -qiE '^[[:space:]]*Triton(Models|ModelRepository)[[:space:]]*=' "${_CONDOR_JOB_AD:-/dev/null}" 2> /dev/null; then
    exit 0
fi

# The sandbox protocol (glidein_triton/worker/sandbox_protocol.py; tests/test_sandbox_protocol.py keeps
# these equal to it): the agent's directory, its files, and the wait when "pending" holds no number.
job_dir="${_CONDOR_SCRATCH_DIR:-.}/.glidein_triton"
answer="$job_dir/prejob.env"
pending="$job_dir/pending"
DEFAULT_ANSWER_WAIT=330
NOTICE_WAIT=10 # seconds for the agent to notice the sandbox (it looks every 20 ms)
PROGRESS_EVERY=10 # seconds between the lines that say the wait goes on

fail() {
    # $1: why there is no answer; tell the job through its stderr and its environment file.
    echo "glidein-triton pre-job: $1" >&2
    if mkdir -p "$job_dir" 2> /dev/null; then
        printf 'TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=all\nTRITON_MODELS_STATUS=failed\nTRITON_MODELS_ERRORS=%s\n' \
            "$1" > "$answer"
    fi
    exit 1
}

nap() { sleep 0.01 2> /dev/null || sleep 1; }

# wait_for FILE SECONDS [WHAT]: until FILE exists, at most SECONDS (whole seconds by the clock); with WHAT,
# it says every PROGRESS_EVERY seconds that it still waits for WHAT.
wait_for() {
    [ -f "$1" ] && return 0
    started=$(date +%s)
    said=$started
    while [ ! -f "$1" ]; do
        now=$(date +%s)
        [ "$now" -le "$((started + $2))" ] || return 1
        if [ -n "$3" ] && [ "$((now - said))" -ge "$PROGRESS_EVERY" ]; then
            echo "glidein-triton pre-job: waiting for $3 ($((now - started)) of $2 s)" >&2
            said=$now
        fi
        nap
    done
}

wait_for "$pending" "$NOTICE_WAIT" \
    || fail "no answer from the glidein's Triton agent after ${NOTICE_WAIT} s (is HasTriton True?)"
read -r limit < "$pending"
case "$limit" in
    '' | *[!0-9]*) limit=$DEFAULT_ANSWER_WAIT ;;
esac
models=$(grep -iE '^[[:space:]]*TritonModels[[:space:]]*=' "${_CONDOR_JOB_AD:-/dev/null}" 2> /dev/null | cut -d = -f 2-)
models=${models#*\"}
models=${models%\"*}
wait_for "$answer" "$limit" "the glidein's Triton agent to load the job's models (${models:-all of its repository})" \
    || fail "the glidein's Triton agent did not answer within $limit s"
status=$(grep '^TRITON_MODELS_STATUS=' "$answer" | cut -d = -f 2-)
while IFS='=' read -r name value; do
    [ "$name" = TRITON_MODELS_ERRORS ] && [ -n "$value" ] && echo "glidein-triton pre-job: not available: $value" >&2
done < "$answer"
echo "glidein-triton pre-job: models $status" >&2
[ "$status" != required-failed ]
