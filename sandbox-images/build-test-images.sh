#!/usr/bin/env bash
# Build every image Holdout's test suite and examples use, skipping those already present:
#   holdout-busybox:1 (+ :test)  a few seconds
#   holdout-python:1             2-4 minutes the first time (debootstrap), then a no-op
#
# Usage: sandbox-images/build-test-images.sh [--busybox-only] [--force]
#   --busybox-only  skip the python image (quick dev loop; the end-to-end tests need it)
#   --force         rebuild even when present
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON=1
PASS=()
for arg in "$@"; do
  case "$arg" in
    --busybox-only) PYTHON=0 ;;
    --with-python) PYTHON=1 ;;  # the default; accepted for clarity
    --force) PASS+=(--force) ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build-test-images: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

"$HERE/busybox/build.sh" "${PASS[@]+"${PASS[@]}"}"
if [ "$PYTHON" = 1 ]; then
  "$HERE/python/build.sh" "${PASS[@]+"${PASS[@]}"}"
fi
