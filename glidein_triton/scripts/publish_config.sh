#!/bin/bash
# glidein-triton: write glidein_config lines and condor_vars.lst lines with GlideinWMS's own helpers.
# Usage: publish_config.sh ADD_CONFIG_LINE_SOURCE GLIDEIN_CONFIG CONDOR_VARS_FILE
#            [config KEY VALUE]... [var NAME TYPE DEFAULT CONDOR_NAME REQUIRED PUBLISH JOB_ENV]...
# Values travel as arguments, never through eval.

# shellcheck source=/dev/null
source "$1" || exit 1
# shellcheck disable=SC2034  # both read by the helpers of add_config_line.source
glidein_config="$2"
condor_vars_file="$3"
shift 3

# The locking writer of recent GlideinWMS, else the older names of the same function.
if declare -F gconfig_add_safe > /dev/null; then
    config_add=gconfig_add_safe
elif declare -F add_config_line_safe > /dev/null; then
    config_add=add_config_line_safe
else
    config_add=add_config_line
fi

while [ $# -gt 0 ]; do
    case "$1" in
        config)
            "$config_add" "$2" "$3" || exit 1
            shift 3
            ;;
        var)
            [ -n "$condor_vars_file" ] || { echo "CONDOR_VARS_FILE is not set in glidein_config" >&2; exit 1; }
            add_condor_vars_line "$2" "$3" "$4" "$5" "$6" "$7" "$8" || exit 1
            shift 8
            ;;
        *)
            echo "publish_config.sh: unknown record '$1'" >&2
            exit 2
            ;;
    esac
done
