#!/usr/bin/env bash
# The memory side of docs/scaling.md's model: CONNS (default 9000) subscribed,
# idle, authenticated connections over R replicas sharing one Redis (client
# storage and fan-out, testdata/bench-cluster.yaml); the replicas pinned to
# CPU 0, one wsgate-bench per replica on CPU 1. Each replica's VmRSS is logged
# before the connections and 45 s after the start (while they are held). From
# the repository root, after
#   make build plugins && go build -o bin/wsgate-bench ./cmd/wsgate-bench
#   mkdir -p /tmp/wsgate-bench-sessions
# run: cmd/wsgate-bench/memory-model.sh R OUTPREFIX   (OUTPREFIX.log gets the figures)
N=$1; OUT=$2; CONNS=${CONNS:-9000}
RUN=wsgate-mm-$(date +%s)-$$:
PIDS=(); T=""; M=""; P=""
for i in $(seq 1 $N); do
  WSGATE_LISTEN=127.0.0.1:818$i WSGATE_METRICS_LISTEN=127.0.0.1:919$i \
    WSGATE_CLIENT_STORAGE_PREFIX=$RUN WSGATE_CLUSTER_PREFIX=$RUN \
    taskset -c 0 bin/wsgate serve --config cmd/wsgate-bench/testdata/bench-cluster.yaml 2>$OUT.gw$i.log &
  PIDS+=($!); T+="${T:+,}ws://127.0.0.1:818$i/"; M+="${M:+,}http://127.0.0.1:919$i/metrics"; P+="${P:+,}$!"
done
for i in $(seq 1 $N); do for k in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:919$i/readyz && break; sleep 0.1; done; done
echo "R=$N $(date -u +%T) load $(cat /proc/loadavg)" | tee -a $OUT.log
for p in "${PIDS[@]}"; do echo "before pid $p rss_kb $(awk '/VmRSS/{print $2}' /proc/$p/status)"; done | tee -a $OUT.log
( sleep 45; for p in "${PIDS[@]}"; do echo "held pid $p rss_kb $(awk '/VmRSS/{print $2}' /proc/$p/status)"; done | tee -a $OUT.log ) &
WATCH=$!
BP=()
for i in $(seq 1 $N); do
  taskset -c 1 bin/wsgate-bench --json --session-dir /tmp/wsgate-bench-sessions \
    --sources 127.0.0.$i \
    --scenario idle --conns $((CONNS / N)) --rate $((3000 / N)) --settle 20s --duration 30s --idle-subscribe acme/relay/bench \
    --target ws://127.0.0.1:818$i/ --metrics http://127.0.0.1:919$i/metrics --gateway-pid ${PIDS[$((i-1))]} > $OUT.$i.json 2>$OUT.$i.err &
  BP+=($!)
done
rc=0; for b in "${BP[@]}"; do wait $b || rc=$?; done
echo "bench exit $rc $(date -u +%T)" | tee -a $OUT.log
wait $WATCH
for p in "${PIDS[@]}"; do kill $p; done; for p in "${PIDS[@]}"; do wait $p; done
redis-cli --scan --pattern "$RUN*" | xargs -r redis-cli del >/dev/null
