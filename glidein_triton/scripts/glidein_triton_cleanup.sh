#!/bin/bash
# glidein-triton cleanup script, installed by the startup script as
# .gwms.d/exec/cleanup/00_glidein_triton_cleanup.sh (so that it runs before cvmfsexec's cvmfs_umount.sh).
# glidein_startup.sh runs it at glidein exit as ./00_glidein_triton_cleanup.sh <glidein_config>, also with
# GLIDEIN_DEBUG_OPTIONS=nocleanup.

glidein_config="$1"
# The value of key $1 in glidein_config $2: the rest of its last line (the last line of a key wins).
config_value() { awk -v key="$1 " 'index($0, key) == 1 { value = substr($0, length(key) + 1) } END { print value }' "$2" 2> /dev/null; }

code_dir=$(config_value GLIDEIN_TRITON_CODE_DIR "$glidein_config")
python=$(config_value GLIDEIN_TRITON_PYTHON "$glidein_config")
if [ ! -x "$python" ] || [ ! -f "$code_dir/glidein_triton/worker/cleanup.py" ]; then
    echo "glidein-triton cleanup: the startup never got to start a server; nothing to clean up" >&2
    exit 0
fi
exec "$python" -I -S -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.cleanup import main; from glidein_triton.worker.logs import exit_now; exit_now(main())' \
    "$code_dir" "$@"
