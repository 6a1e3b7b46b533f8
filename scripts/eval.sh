#!/usr/bin/env bash
# make eval: start the server on the default repository, evaluate the bundled COCO images over
# gRPC, measure throughput, stop the server. Exits non-zero if any step failed.
set -uo pipefail
PY=${PYTHON:-.venv/bin/python}
REPO=${REPO:-model_repository}
OUT=${OUT:-results}
PORT=${EVAL_PORT:-$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL=127.0.0.1:$PORT
mkdir -p "$OUT"
LOG=$OUT/server.log

$PY -m backend.server --model-repository "$REPO" --host 127.0.0.1 --grpc-port "$PORT" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT

echo "server pid $SERVER on $URL (log: $LOG); waiting for hrnet_pose..."
$PY - "$URL" <<'PY' || { echo "server did not become ready; log:"; tail -n 30 "$LOG"; exit 1; }
import sys, time
import tritonclient.grpc as g
c = g.InferenceServerClient(sys.argv[1])
for _ in range(600):
    try:
        if c.is_model_ready("hrnet_pose"):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PY

status=0
$PY -m client.coco_eval --url "$URL" --out "$OUT/results.json" || status=$?
$PY -m client.perf --url "$URL" --model hrnet_pose --concurrency-range 1:2 \
    --measurement-interval 4000 --max-trials 5 -f "$OUT/perf_hrnet_pose.csv" || status=$?
exit $status
