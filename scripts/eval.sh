#!/usr/bin/env bash
# make eval: start the server on the default repository, evaluate the bundled COCO images over
# gRPC, measure throughput, stop the server. Exits non-zero if any step failed.
set -uo pipefail
PY=${PYTHON:-.venv/bin/python}
REPO=${REPO:-model_repository}
OUT=${OUT:-results}
mkdir -p "$OUT"
LOG=$OUT/server.log

# Port 0: the server binds a free port and logs it (no window for another process to take it).
$PY -m backend.server --model-repository "$REPO" --host 127.0.0.1 --grpc-port "${EVAL_PORT:-0}" --http-port 0 --metrics-port 0 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT

URL=
for _ in $(seq 600); do
    URL=$(grep -oE 'Started GRPCInferenceService at [^ ]+' "$LOG" | head -n 1 | awk '{print $NF}')
    [ -n "$URL" ] || ! kill -0 $SERVER 2>/dev/null && break
    sleep 0.2
done
[ -n "$URL" ] || { echo "the server did not start; its log ($LOG):"; tail -n 30 "$LOG"; exit 1; }
echo "server pid $SERVER on $URL (log: $LOG)"

status=0
# The models are loaded once the log names the port; --wait-ready covers the last moment.
$PY -m client.coco_eval --url "$URL" --wait-ready 60 --out "$OUT/results.json" || status=$?
# Exit 3 = a level did not settle: its figures are printed, marked; not a failure of the eval.
$PY -m client.perf --url "$URL" --model hrnet_pose --concurrency-range 1:2 \
    --measurement-interval 4000 --max-trials 5 -f "$OUT/perf_hrnet_pose.csv" \
    || { rc=$?; [ $rc -eq 3 ] || status=$rc; }
exit $status
