#!/bin/bash
# glidein-triton startup script. GlideinWMS runs it as: glidein_triton_setup.sh glidein_config <id>
# With the switch (GLIDEIN_TRITON) off it publishes HasTriton = False and exits at once; otherwise it finds
# the worker code and a Python >= 3.9 and hands over to glidein_triton.worker.startup.

glidein_config="$1"
script_name=glidein_triton_setup.sh

report() {
    # error_gen -ok|-error ...; without an error_gen (no ERROR_GEN_PATH) the result goes to stderr only.
    if [ -x "$error_gen" ]; then
        "$error_gen" "$@"
    else
        echo "glidein-triton: no error_gen (ERROR_GEN_PATH='$error_gen'); not reported: $*" >&2
    fi
}

switch_off() { [[ "${1^^}" =~ ^(|FALSE|F|NO|N|0+)$ ]]; }

# The value of key $1 in glidein_config $2: the rest of its last line (the last line of a key wins).
config_value() { awk -v key="$1 " 'index($0, key) == 1 { value = substr($0, length(key) + 1) } END { print value }' "$2" 2> /dev/null; }

add_config_line_source=$(config_value ADD_CONFIG_LINE_SOURCE "$glidein_config")
# shellcheck source=/dev/null
if ! { [ -f "$add_config_line_source" ] && source "$add_config_line_source"; }; then
    # A damaged glidein: nothing can be published. Report it, reading glidein_config ourselves.
    value() { config_value "$1" "$glidein_config" | tr -d ' \t\r\n'; }
    error_gen=$(config_value ERROR_GEN_PATH "$glidein_config")
    detail="cannot source ADD_CONFIG_LINE_SOURCE='$add_config_line_source' of $glidein_config: nothing published"
    echo "glidein-triton: $detail" >&2
    switch_off "$(value GLIDEIN_TRITON)" && { report -ok "$script_name" HasTriton False; exit 0; }
    required=$(value GLIDEIN_TRITON_REQUIRED)
    if [[ "${required^^}" =~ ^(TRUE|T|YES|Y|0*[1-9][0-9]*)$ ]]; then
        report -error "$script_name" Corruption "$detail" HasTriton False
        exit 1
    fi
    report -ok "$script_name" HasTriton False TritonFailure Corruption
    exit 0
fi

no_triton() {
    # Publish HasTriton = False; $1 and $2: failure type and detail, when this is a failure.
    # (Python reads these keys itself: the shell looks them up only on this path.)
    # shellcheck disable=SC2034  # read by add_condor_vars_line (add_config_line.source)
    condor_vars_file=$(gconfig_get CONDOR_VARS_FILE "$glidein_config")
    error_gen=$(gconfig_get ERROR_GEN_PATH "$glidein_config")
    gconfig_add HAS_TRITON False
    add_condor_vars_line HAS_TRITON C - HasTriton N Y HAS_TRITON
    if [ -z "$1" ]; then
        report -ok "$script_name" HasTriton False
        exit 0
    fi
    echo "glidein-triton: $2" >&2
    gconfig_add TRITON_FAILURE "$1: $2"
    add_condor_vars_line TRITON_FAILURE S - TritonFailure N Y -
    if gconfig_get_bool GLIDEIN_TRITON_REQUIRED "$glidein_config"; then
        report -error "$script_name" "$1" "$2" HasTriton False
        exit 1
    fi
    report -ok "$script_name" HasTriton False TritonFailure "$1"
    exit 0
}

switch=$(gconfig_get GLIDEIN_TRITON "$glidein_config" | tr -d ' \t\r\n')
if switch_off "$switch"; then
    no_triton
fi

code_dir=""
for prefix in "" ENTRY_ GLIDECLIENT_ GLIDECLIENT_GROUP_; do
    code_dir=$(gconfig_get "${prefix}GLIDEIN_TRITON_DIR" "$glidein_config")
    [ -n "$code_dir" ] && break
done
if [ ! -f "$code_dir/glidein_triton/worker/startup.py" ]; then
    no_triton Corruption "worker code not found: GLIDEIN_TRITON_DIR='$code_dir' (the payload tarball)"
fi

# CVMFS mounted by cvmfsexec elsewhere: CVMFS_MOUNT_DIR (the environment's, else glidein_config's), and each
# /cvmfs path translated into it as GlideinWMS's cvmfs_resolve_path does (worker/cvmfs.py for the Python side).
cvmfs_mount=${CVMFS_MOUNT_DIR:-$(gconfig_get CVMFS_MOUNT_DIR "$glidein_config")}
cvmfs_mount=${cvmfs_mount%/}
[ "$cvmfs_mount" = /cvmfs ] && cvmfs_mount=""
cvmfs_path() {
    local path="$1" target
    if [ -n "$cvmfs_mount" ] && [[ "$path" = /cvmfs || "$path" = /cvmfs/* ]]; then
        path="$cvmfs_mount${path#/cvmfs}"
        if [ -L "$path" ]; then
            target=$(readlink "$path")
            [[ "$target" = /cvmfs || "$target" = /cvmfs/* ]] && path="$cvmfs_mount${target#/cvmfs}"
        fi
    fi
    printf '%s\n' "$path"
}

candidates=()
configured_python=$(gconfig_get GLIDEIN_TRITON_PYTHON "$glidein_config")
[ -n "$configured_python" ] && candidates+=("$(cvmfs_path "$configured_python")")
candidates+=(python3 python3.13 python3.12 python3.11 python3.10 python3.9)
# EL8's python3 is 3.6: then the Pythons of the LCG views on CVMFS (docs/lifecycle.md), used if they start.
candidates+=("$(cvmfs_path /cvmfs/sft.cern.ch/lcg/views/LCG_107/x86_64-el8-gcc11-opt/bin/python3)"
    "$(cvmfs_path /cvmfs/sft.cern.ch/lcg/views/LCG_106/x86_64-el8-gcc11-opt/bin/python3)")
python=""
too_old=""
for candidate in "${candidates[@]}"; do
    # One start per candidate: its version, and the real interpreter behind wrappers or shims.
    if command -v "$candidate" > /dev/null 2>&1; then
        found=$("$candidate" -I -S -c 'import sys; print("%d.%d %s" % (sys.version_info[:2] + (sys.executable,)))' 2> /dev/null)
        version=${found%% *}
        if [[ "$version" =~ ^3\.(9|[1-9][0-9])$ ]] && [ -x "${found#* }" ]; then
            python=${found#* }
            break
        fi
        [ -n "$found" ] && too_old+="; $candidate is $version (${found#* })"
    fi
done
if [ -z "$python" ]; then
    no_triton WN_Resource "no Python >= 3.9 found (tried: ${candidates[*]}${too_old:-; none of them runs}): set GLIDEIN_TRITON_PYTHON to a Python >= 3.9 (on EL8, where python3 is 3.6: install the python39 package, whose python3.9 is found on PATH)"
fi

# Cleanup and periodic scripts find the code and the interpreter here.
gconfig_add GLIDEIN_TRITON_CODE_DIR "$code_dir"
gconfig_add GLIDEIN_TRITON_PYTHON "$python"
exec "$python" -I -S -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.startup import main; from glidein_triton.worker.logs import exit_now; exit_now(main())' \
    "$code_dir" "$@"
