# glidein-triton: installed by the startup script as .gwms.d/exec/prejob/glidein_triton_2_prejob_env.sh,
# NOT executable, so that GlideinWMS's job wrapper sources it (after glidein_triton_1_prejob.sh has run):
# it exports the pre-job hook's results to the job. POSIX sh (a job container may have no bash); it runs in
# the wrapper's own shell, so it only sets glidein_triton_* helper variables and unsets them again.
#   TRITON_MODELS_READY   models loaded and held for this job (comma separated)
#   TRITON_MODELS_FAILED  models that could not be made available
#   TRITON_MODELS_STATUS  ready | failed | required-failed
#   TRITON_TOKEN_FILE     in a job container, where the glidein's token file is not visible: the copy of it
#                         that came with .gwms.d (this file is sourced from .gwms.d/exec/prejob)
# With required-failed (the job set TritonModelsRequired = True) the job is not started: the wrapper's own
# exit_wrapper reports a wrapper failure to HTCondor, which then runs the job elsewhere.

glidein_triton_file="${_CONDOR_SCRATCH_DIR:-/nonexistent}/.glidein_triton/prejob.env"
if [ -r "$glidein_triton_file" ]; then
    while IFS='=' read -r glidein_triton_name glidein_triton_value; do
        case "$glidein_triton_name" in
            TRITON_MODELS_READY | TRITON_MODELS_FAILED | TRITON_MODELS_STATUS)
                export "$glidein_triton_name=$glidein_triton_value"
                ;;
        esac
    done < "$glidein_triton_file"
    if [ "$TRITON_MODELS_STATUS" = required-failed ] && command -v exit_wrapper > /dev/null 2>&1; then
        unset glidein_triton_file glidein_triton_name glidein_triton_value
        exit_wrapper "glidein-triton: this job requires Triton models that could not be loaded: $TRITON_MODELS_FAILED" 1
    fi
fi
unset glidein_triton_file glidein_triton_name glidein_triton_value
if [ ! -r "${TRITON_TOKEN_FILE:-/nonexistent}" ] && [ -r ../../lib/glidein_triton/token ]; then
    TRITON_TOKEN_FILE="$(cd ../../lib/glidein_triton && pwd)/token"
    export TRITON_TOKEN_FILE
fi
