#!/usr/bin/env bash
# Write the digits challenge's data folder into DEST by running make_data.py inside
# holdout-python:1, so the host needs neither Python packages nor network.
# Usage: examples/digits/make_data.sh DEST
set -euo pipefail

[ "$#" -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
IMAGE="${HOLDOUT_PYTHON_IMAGE:-holdout-python:1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
DEST="$(cd "$1" && pwd)"

docker image inspect "$IMAGE" >/dev/null 2>&1 ||
  { echo "make_data: $IMAGE is not present; run sandbox-images/python/build.sh" >&2; exit 1; }

# Files come out owned by the caller, not by root or nobody.
docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
  --tmpfs /tmp:size=64m --user "$(id -u):$(id -g)" \
  -v "$HERE:/src:ro" -v "$DEST:/out" \
  "$IMAGE" python3 /src/make_data.py /out
