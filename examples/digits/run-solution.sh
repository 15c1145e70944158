#!/usr/bin/env bash
# Run one solution by hand the way a locked-down Holdout run would, without the server:
# plain `docker run` with the sandbox flags and this challenge's limits, then report the exit
# code, whether the kernel OOM-killed it, the duration and (if it wrote predictions) its
# accuracy on DATA/labels.csv. For checking the examples; the server is the real judge.
#
# Usage: examples/digits/run-solution.sh SOLUTION DATA
#   SOLUTION  a name under solutions/ (good, baseline, ...) or a folder holding main.py
#   DATA      a folder written by make_data.sh
# Environment: HOLDOUT_RUNTIME=runsc to run under gVisor; WALL_TIME (seconds, default 60).
set -euo pipefail

[ "$#" -eq 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${HOLDOUT_PYTHON_IMAGE:-holdout-python:1}"
WALL_TIME="${WALL_TIME:-60}"
SOL="$1"; [ -d "$SOL" ] || SOL="$HERE/solutions/$1"
SOL="$(cd "$SOL" && pwd)"
DATA="$(cd "$2" && pwd)"
NAME="holdout-try-$(basename "$SOL")-$$"

OUT="$(mktemp -d)"
chown 65534:65534 "$OUT" 2>/dev/null || chmod 0777 "$OUT"  # the run's user must be able to write it
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT

docker run -d --name "$NAME" ${HOLDOUT_RUNTIME:+--runtime "$HOLDOUT_RUNTIME"} \
  --network none --read-only --user 65534:65534 --cap-drop ALL \
  --security-opt no-new-privileges --tmpfs /tmp:size=64m \
  -m 1g --memory-swap 1g --pids-limit 64 --cpus 1 \
  -e HOLDOUT_DATA=/data -e HOLDOUT_OUTPUT=/output \
  -v "$DATA/inputs:/data:ro" -v "$SOL:/submission:ro" -v "$OUT:/output" \
  "$IMAGE" python3 /submission/main.py >/dev/null
start=$SECONDS
status="$(timeout "$WALL_TIME" docker wait "$NAME" || true)"
elapsed=$((SECONDS - start))
if [ -z "$status" ]; then
  docker kill "$NAME" >/dev/null 2>&1 || true
  status="$(docker wait "$NAME")"
  timed_out=true
else
  timed_out=false
fi
oom="$(docker inspect --format '{{.State.OOMKilled}}' "$NAME")"
echo "--- last log lines"
docker logs --tail 15 "$NAME" 2>&1 | sed 's/^/    /'
echo "--- $(basename "$SOL"): exit=$status oom_killed=$oom timed_out=$timed_out elapsed=${elapsed}s"

if [ -s "$OUT/predictions.csv" ]; then
  docker run --rm --network none --read-only --user 65534:65534 --cap-drop ALL \
    -v "$OUT:/output:ro" -v "$DATA:/private:ro" "$IMAGE" python3 -c '
import csv
truth = {r["id"]: r["label"] for r in csv.DictReader(open("/private/labels.csv"))}
pred = {r["id"]: r["label"] for r in csv.DictReader(open("/output/predictions.csv"))}
assert set(pred) == set(truth), "predictions do not cover exactly the test ids"
print("--- accuracy on labels.csv: %.4f (%d rows)" % (sum(pred[i] == t for i, t in truth.items()) / len(truth), len(truth)))
'
else
  echo "--- no predictions.csv written"
fi
