#!/usr/bin/env bash
# The issue 19 floor-ratio runs: every gateway scenario with --with-floor
# (the kernel floor measured first, in the same run), a fresh gateway per
# run, the gateway pinned to CPU 0 and the tool (and the floor's clients)
# to CPU 1, the floor's measuring thread on CPU 0. From the repository root:
#
#   make build plugins && go build -o bin/wsgate-bench ./cmd/wsgate-bench
#   cmd/wsgate-bench/floor-ratios.sh OUTDIR [MODES] [SCENARIOS]
#
# MODES defaults to "epoll goroutine", SCENARIOS to "idle connect broadcast
# rpc". Reports go to OUTDIR/<scenario>-<mode>.json, the load average at each
# run's start to OUTDIR/log. PORT and MPORT (18080, 19090) and SESS
# (/tmp/wsgate-floor-sessions) keep the runs off a gateway already running;
# BENCHBIN (bin/wsgate-bench) lets builds under test in other directories
# (run from there) share one tool; FLOOR_PHASES (e.g.
# write,writev,writev-read,handshake) changes the floor's phases.
#
# STORE=redis (default files) puts the sessions in Redis instead:
# the gateway runs testdata/bench-redis.yaml (session.store redis,
# client_cache) and the tool seeds with --session-redis. REDIS
# (127.0.0.1:6379) is the server; every run of the script uses a key
# prefix of its own (REDIS_PREFIX, default wsgate-floor-<time>-<pid>:),
# whose session keys are deleted when the script ends, however it ends
# (redis-cli needed; they also expire after --session-redis-ttl, 2h).
# Redis is not pinned; its CPU over each window is in the report's
# other_processes (REDIS_PID, default the process listening on REDIS's
# port; empty: not reported).
set -u
OUT=${1:?usage: floor-ratios.sh OUTDIR [MODES] [SCENARIOS]}
MODES=${2:-"epoll goroutine"}
SCENARIOS=${3:-"idle connect broadcast rpc"}
PORT=${PORT:-18080}; MPORT=${MPORT:-19090}; SESS=${SESS:-/tmp/wsgate-floor-sessions}
STORE=${STORE:-files}
mkdir -p "$OUT"
# Interrupted, the script still stops its gateway (a background job of a
# script ignores SIGINT) and, for STORE=redis, deletes its keys.
GWPID=
cleanup() { :; }
trap '[ -n "$GWPID" ] && kill $GWPID 2>/dev/null; cleanup' EXIT
trap 'exit 130' INT TERM
case $STORE in
  files)
    mkdir -p "$SESS"
    CONFIG=cmd/wsgate-bench/testdata/bench.yaml
    STOREFLAGS="--session-dir $SESS"
    GWENV="WSGATE_SESSION_FILES_PATH=$SESS" ;;
  redis)
    REDIS=${REDIS:-127.0.0.1:6379}
    REDIS_PREFIX=${REDIS_PREFIX:-wsgate-floor-$(date +%s)-$$:}
    case $REDIS_PREFIX in
      ''|*[\ \*\?\[\]\\]*) echo "floor-ratios.sh: REDIS_PREFIX must be non-empty, without blanks or glob characters" >&2; exit 2 ;;
    esac
    RCLI="redis-cli -h ${REDIS%:*} -p ${REDIS##*:}"
    $RCLI ping >/dev/null || { echo "floor-ratios.sh: no Redis at $REDIS" >&2; exit 1; }
    # Only the tool's keys (<prefix>wsgbench<i>): a REDIS_PREFIX shared
    # with an application (sf_s) loses nothing else.
    cleanup() { $RCLI --scan --pattern "${REDIS_PREFIX}wsgbench*" | xargs -r $RCLI del >/dev/null; }
    if [ -z "${REDIS_PID+set}" ]; then
      REDIS_PID=$(ss -Hltnp "sport = :${REDIS##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    fi
    CONFIG=cmd/wsgate-bench/testdata/bench-redis.yaml
    STOREFLAGS="--session-redis $REDIS --session-redis-prefix $REDIS_PREFIX ${REDIS_PID:+--extra-pid $REDIS_PID}"
    GWENV="WSGATE_SESSION_REDIS_ADDRS=$REDIS WSGATE_SESSION_REDIS_PREFIX=$REDIS_PREFIX" ;;
  *) echo "floor-ratios.sh: STORE must be files or redis, not $STORE" >&2; exit 2 ;;
esac
echo "store $STORE: $CONFIG, $STOREFLAGS" | tee -a "$OUT/log"
BENCH="taskset -c 1 ${BENCHBIN:-bin/wsgate-bench} --json $STOREFLAGS --sources 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
  --target ws://127.0.0.1:$PORT/ --metrics http://127.0.0.1:$MPORT/metrics
  --with-floor --floor-cpu 0 --floor-pairs 9000 --rounds 100 --handshakes 20000
  ${FLOOR_PHASES:+--floor-phases $FLOOR_PHASES}"
args_of() {
  case $1 in
    idle)      echo "--scenario idle --conns 15000 --rate 5000 --settle 20s --duration 0 --idle-subscribe acme/relay/bench" ;;
    connect)   echo "--scenario connect --conns 30000 --session-ids 2000 --concurrency 128 --duration 30s" ;;
    broadcast) echo "--scenario broadcast --conns 10000 --topic acme/relay/bench --publish-rate 1 --payload-bytes 100 --duration 20s" ;;
    rpc)       echo "--scenario rpc --conns 1000 --duration 10s" ;;
  esac
}
for mode in $MODES; do for sc in $SCENARIOS; do
  env WSGATE_TRANSPORT_MODE=$mode WSGATE_LISTEN=127.0.0.1:$PORT WSGATE_METRICS_LISTEN=127.0.0.1:$MPORT \
    $GWENV taskset -c 0 bin/wsgate serve --config $CONFIG \
    2>"$OUT/$sc-$mode.gw.log" &
  GWPID=$!
  for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:$MPORT/readyz && break; sleep 0.1; done
  echo "$sc-$mode $(date -u +%T) load $(cat /proc/loadavg)" | tee -a "$OUT/log"
  $BENCH --gateway-pid $GWPID $(args_of $sc) >"$OUT/$sc-$mode.json" 2>"$OUT/$sc-$mode.err"
  echo "$sc-$mode exit $? $(date -u +%T)" | tee -a "$OUT/log"
  kill $GWPID; wait $GWPID 2>/dev/null; GWPID=
done; done
