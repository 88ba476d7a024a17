#!/bin/bash
# glidein-triton periodic script. The factory lists it with period="N" (and prefix="NOPREFIX", so that the
# attributes keep their names). GlideinWMS runs it once at startup as glidein_triton_periodic.sh glidein_config
# <id> (cwd: the glidein directory; that run reports through error_gen -ok, as every custom script should),
# then through script_wrapper.sh from HTCondor's startd cron (absolute glidein_config path, a fresh temporary
# cwd, GLIDEIN_PERIODIC_SCRIPT=true). It prints machine ad lines (Name = value) and always exits 0.

glidein_config="$1"
# The value of key $1 in glidein_config $2: the rest of its last line (the last line of a key wins).
config_value() { awk -v key="$1 " 'index($0, key) == 1 { value = substr($0, length(key) + 1) } END { print value }' "$2" 2> /dev/null; }

code_dir=$(config_value GLIDEIN_TRITON_CODE_DIR "$glidein_config")
python=$(config_value GLIDEIN_TRITON_PYTHON "$glidein_config")
if [ ! -x "$python" ] || [ ! -f "$code_dir/glidein_triton/worker/periodic.py" ]; then
    # No server was set up by this glidein (Triton off, or the startup script has not run yet).
    echo "TritonReady = False"
    if [ "$GLIDEIN_PERIODIC_SCRIPT" != true ]; then
        error_gen=$(config_value ERROR_GEN_PATH "$glidein_config")
        if [ -x "$error_gen" ]; then
            "$error_gen" -ok glidein_triton_periodic.sh TritonReady False
        else
            echo "glidein-triton: no error_gen (ERROR_GEN_PATH='$error_gen'); first run not reported" >&2
        fi
    fi
    exit 0
fi
exec "$python" -I -S -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.periodic import main; from glidein_triton.worker.logs import exit_now; exit_now(main())' \
    "$code_dir" "$@"
