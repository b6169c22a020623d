#!/bin/sh
# Stand-in XMRig for tests and demos (busybox only). It accepts XMRig's command line, records it in
# /tmp/xmrig-args, and with `--http-port N` serves a fake XMRig HTTP API (/1/summary, /2/summary) on
# 127.0.0.1:N with busybox httpd. It exits promptly on SIGTERM, as XMRig does.
#   STANDIN_HASHRATE    hashrate.total[0] in the summary (default 1234.5)
#   STANDIN_EXIT_AFTER  exit with status 1 after this many seconds (a crashing miner)
# The same two can come from the XMRig config file given with --config=FILE, as the numeric fields
# "standin_hashrate" and "standin_exit_after", so a test can shape a worker the manager starts itself.

# First of all: as PID 1 the shell ignores SIGTERM unless it has a handler, and a stop can come
# right after the start.
HTTPD_PID=""
CHILD=""
stop() {
    [ -n "$HTTPD_PID" ] && kill "$HTTPD_PID" 2>/dev/null
    [ -n "$CHILD" ] && kill "$CHILD" 2>/dev/null
    exit "${1:-0}"
}
trap 'stop 0' TERM INT

PORT=""
CONFIG=""
POOL=""
ALGO=""
COIN=""
prev=""
for arg in "$@"; do
    case "$prev" in
        --http-port) PORT="$arg" ;;
        -o|--url) POOL="$arg" ;;
        -a|--algo) ALGO="$arg" ;;
        --coin) COIN="$arg" ;;
    esac
    case "$arg" in
        --http-port=*) PORT="${arg#--http-port=}" ;;
        --url=*) POOL="${arg#--url=}" ;;
        --algo=*) ALGO="${arg#--algo=}" ;;
        --coin=*) COIN="${arg#--coin=}" ;;
        --config=*) CONFIG="${arg#--config=}" ;;
    esac
    prev="$arg"
done

# A numeric field of the config file, empty when absent.
config_number() {
    [ -n "$CONFIG" ] && [ -f "$CONFIG" ] && sed -n "s/.*\"$1\"[ ]*:[ ]*\([0-9.][0-9.]*\).*/\1/p" "$CONFIG" | head -n 1
}
HASHRATE="${STANDIN_HASHRATE:-$(config_number standin_hashrate)}"
HASHRATE="${HASHRATE:-1234.5}"
EXIT_AFTER="${STANDIN_EXIT_AFTER:-$(config_number standin_exit_after)}"

printf '%s\n' "$@" > /tmp/xmrig-args
echo "standin xmrig: $*"

# JSON string of the arguments, with backslashes and quotes escaped.
ARGS_JSON=$(printf '%s' "$*" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')

summary() {
    cat <<JSON
{"id":"standin","worker_id":"standin","version":"6.21.0-standin","kind":"cpu","uptime":$1,
 "algo":"${ALGO:-rx/0}","coin":"${COIN}",
 "connection":{"pool":"${POOL}","uptime":$1,"accepted":7,"rejected":0},
 "hashrate":{"total":[${HASHRATE},${HASHRATE},${HASHRATE}],"highest":${HASHRATE}},
 "results":{"diff_current":100000,"shares_good":7,"shares_total":7,"avg_time":30,"hashes_total":1000000},
 "standin_args":"${ARGS_JSON}"}
JSON
}

if [ -n "$PORT" ]; then
    mkdir -p /www/1 /www/2
    summary 0 > /www/1/summary
    cp /www/1/summary /www/2/summary
    httpd -f -p "127.0.0.1:$PORT" -h /www &
    HTTPD_PID=$!
fi

if [ -n "$EXIT_AFTER" ]; then
    sleep "$EXIT_AFTER" &
    CHILD=$!
    wait "$CHILD"
    echo "standin xmrig: simulated crash"
    CHILD=""
    stop 1
fi

# Sleep in the background and wait: `wait` returns as soon as a signal arrives, so TERM is prompt.
while true; do
    sleep 3600 &
    CHILD=$!
    wait "$CHILD"
done
