# shellcheck shell=sh
# glidein-triton: installed by the startup script as .gwms.d/exec/prejob/glidein_triton_2_prejob_env.sh,
# NOT executable, so that GlideinWMS's job wrapper sources it (after glidein_triton_1_prejob.sh has run):
# it exports the agent's answer for this job. POSIX sh (a job container may have no bash); it runs in the
# wrapper's own shell, so it only sets glidein_triton_* helper variables and unsets them again.
#   TRITON_MODELS_READY   models loaded and held for this job (comma separated)
#   TRITON_MODELS_FAILED  models that could not be made available
#   TRITON_MODELS_STATUS  ready | failed | required-failed | none
#   TRITON_MODELS_ERRORS  why each failed model failed
# With required-failed (the job set TritonModelsRequired = True) the job is not started: the wrapper's own
# exit_wrapper reports a wrapper failure to HTCondor (its failure file, found also from inside GlideinWMS's
# container), which then runs the job elsewhere.

# The sandbox protocol (glidein_triton/worker/sandbox_protocol.py; tests/test_sandbox_protocol.py keeps
# these names equal to it).
glidein_triton_dir="${_CONDOR_SCRATCH_DIR:-/nonexistent}/.glidein_triton"
if [ -r "$glidein_triton_dir/prejob.env" ]; then
    while IFS='=' read -r glidein_triton_name glidein_triton_value; do
        case "$glidein_triton_name" in
            TRITON_MODELS_READY | TRITON_MODELS_FAILED | TRITON_MODELS_STATUS | TRITON_MODELS_ERRORS)
                export "$glidein_triton_name=$glidein_triton_value"
                ;;
        esac
    done < "$glidein_triton_dir/prejob.env"
    if [ "$TRITON_MODELS_STATUS" = required-failed ] && command -v exit_wrapper > /dev/null 2>&1; then
        # Inside GlideinWMS's container the starter's path of its wrapper failure file (the job's scratch
        # directory as the host sees it) is not there: the same file is in the scratch directory as the job
        # sees it (bound at /srv). The starter then ends the job as a wrapper failure, not the job's own.
        if [ -n "${_CONDOR_WRAPPER_ERROR_FILE:-}" ] && [ ! -d "${_CONDOR_WRAPPER_ERROR_FILE%/*}" ] \
            && [ -d "${_CONDOR_SCRATCH_DIR:-/nonexistent}" ]; then
            _CONDOR_WRAPPER_ERROR_FILE="$_CONDOR_SCRATCH_DIR/${_CONDOR_WRAPPER_ERROR_FILE##*/}"
            export _CONDOR_WRAPPER_ERROR_FILE
        fi
        unset glidein_triton_dir glidein_triton_name glidein_triton_value
        exit_wrapper "glidein-triton: this job requires Triton models that could not be loaded: $TRITON_MODELS_ERRORS" 1
    fi
fi
unset glidein_triton_dir glidein_triton_name glidein_triton_value
