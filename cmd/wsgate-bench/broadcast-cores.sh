#!/usr/bin/env bash
# broadcast 10k x 1/s, gateway and tool both unpinned (both cores), epoll; and the same pinned for comparison
# From the repository root, after make build plugins && go build -o bin/wsgate-bench ./cmd/wsgate-bench.
OUT=${1:-/tmp/broadcast-cores}; mkdir -p $OUT /tmp/ab/sessions
for run in unpinned pinned unpinned pinned; do
  GW=""; TL=""; [ $run = pinned ] && GW="taskset -c 0" && TL="taskset -c 1"
  WSGATE_LISTEN=127.0.0.1:18380 WSGATE_METRICS_LISTEN=127.0.0.1:19390 WSGATE_SESSION_FILES_PATH=/tmp/ab/sessions \
    $GW bin/wsgate serve --config cmd/wsgate-bench/testdata/bench.yaml 2>$OUT/gw.log &
  G=$!
  for i in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:19390/readyz && break; sleep 0.1; done
  echo "$run $(date -u +%T) load $(cat /proc/loadavg)" | tee -a $OUT/log
  $TL bin/wsgate-bench --json --session-dir /tmp/ab/sessions --sources 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4 \
    --target ws://127.0.0.1:18380/ --metrics http://127.0.0.1:19390/metrics --gateway-pid $G \
    --scenario broadcast --conns 10000 --topic acme/relay/bench --publish-rate 1 --payload-bytes 100 --duration 20s \
    > $OUT/$run-$(date +%s).json 2>>$OUT/err
  kill $G; wait $G 2>/dev/null
done
