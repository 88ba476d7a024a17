#!/bin/bash
# Test double of GlideinWMS's error_gen.sh (see README.md in this directory). Writes otrb_output.xml in the
# current directory:  error_gen.sh -ok ID [KEY VALUE]...  |  error_gen.sh -error ID TYPE DETAIL [KEY VALUE]...

types=" WN_Resource Network Config VO_Config Corruption VO_Proxy "
now=$(date +%Y-%m-%dT%H:%M:%S%:z)

metrics() {
    if [ $(( $# % 2 )) -ne 0 ]; then
        echo "error_gen.sh: metrics come in KEY VALUE pairs" >&2
        exit 2
    fi
    while [ "$#" -gt 0 ]; do
        echo "    <metric name=\"$1\" ts=\"$now\" uri=\"local\">$2</metric>"
        shift 2
    done
}

mode="$1"
id="$2"
shift 2 || { echo "usage: error_gen.sh -ok|-error ID ..." >&2; exit 2; }
case "$mode" in
    -ok)
        body=$(metrics "$@") || exit 2
        status=OK
        detail=""
        ;;
    -error)
        if [ "$#" -lt 2 ] || [[ "$types" != *" $1 "* ]]; then
            echo "error_gen.sh: -error needs a failure type out of:$types and a detail" >&2
            exit 2
        fi
        failure="$1"
        detail="$2"
        shift 2
        body=$(printf '    <metric name="failure" ts="%s" uri="local">%s</metric>\n' "$now" "$failure"; metrics "$@") || exit 2
        status=ERROR
        ;;
    *)
        echo "usage: error_gen.sh -ok|-error ID ..." >&2
        exit 2
        ;;
esac
{
    echo '<?xml version="1.0"?>'
    echo "<OSGTestResult id=\"$id\" version=\"4.3.1\">"
    echo "  <result>"
    echo "    <status>$status</status>"
    [ -n "$body" ] && echo "$body"
    echo "  </result>"
    if [ -n "$detail" ]; then
        echo "  <detail>"
        printf '%s\n' "$detail" | sed 's/^/    /'
        echo "  </detail>"
    fi
    echo "</OSGTestResult>"
} > otrb_output.xml
