#!/bin/bash
# glidein-triton cleanup script, installed by the startup script into .gwms.d/exec/cleanup.
# glidein_startup.sh runs it at glidein exit as: ./glidein_triton_cleanup.sh <glidein_config>

glidein_config="$1"
value() { grep "^$1 " "$glidein_config" 2> /dev/null | tail -n 1 | cut -d ' ' -f 2-; }
code_dir=$(value GLIDEIN_TRITON_CODE_DIR)
python=$(value GLIDEIN_TRITON_PYTHON)
if [ ! -x "$python" ] || [ ! -f "$code_dir/glidein_triton/worker/cleanup.py" ]; then
    echo "glidein-triton cleanup: the startup never got to start a server; nothing to clean up" >&2
    exit 0
fi
exec "$python" -I -S -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.cleanup import main; sys.exit(main())' \
    "$code_dir" "$@"
