#!/usr/bin/env bash
# Build `holdout-busybox:1` (also tagged `holdout-busybox:test`): FROM scratch with Debian's
# static busybox. Needs no registry and no network; takes a few seconds.
#
# Usage: sandbox-images/busybox/build.sh [--force]
#   --force   rebuild even if an image with the label is already present
set -euo pipefail

IMAGE="holdout-busybox:1"
ALIASES=("holdout-busybox:test")
RUNTIME_LABEL="busybox-1"
BUSYBOX="${HOLDOUT_BUSYBOX:-/bin/busybox}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
START=$SECONDS

log() { printf 'holdout busybox image [%3ds]: %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'holdout busybox image: error: %s\n' "$*" >&2; exit 1; }

FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

command -v docker >/dev/null 2>&1 || die "docker not found; run scripts/setup-docker.sh first"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (run scripts/setup-docker.sh, or use sudo / the docker group)"

tag_aliases() { for a in "${ALIASES[@]}"; do docker tag "$IMAGE" "$a"; done; }

present_label="$(docker image inspect --format '{{index .Config.Labels "holdout.runtime"}}' "$IMAGE" 2>/dev/null || true)"
if [ "$FORCE" -eq 0 ] && [ "$present_label" = "$RUNTIME_LABEL" ]; then
  tag_aliases
  log "$IMAGE already present (holdout.runtime=$RUNTIME_LABEL), skipping build"
  exit 0
fi

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found; apt-get install busybox-static (scripts/setup-docker.sh does)"
# A dynamically linked busybox (Debian's `busybox` package) would not run in an empty image.
if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked; install busybox-static (it replaces the busybox package)"
fi

old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
CONTEXT="$(mktemp -d)"
trap 'rm -rf "$CONTEXT"' EXIT
cp "$HERE/Dockerfile" "$HERE/passwd" "$HERE/group" "$CONTEXT/"
cp "$BUSYBOX" "$CONTEXT/busybox"

log "building $IMAGE from $BUSYBOX ($("$BUSYBOX" 2>&1 | head -n1 | cut -d' ' -f1-2))"
# The legacy builder is enough (no buildx on Debian's docker.io); --pull=false: scratch needs no pull.
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$CONTEXT" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "docker build failed"
fi
tag_aliases
# A --force rebuild leaves the previous image untagged: drop it unless something still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  # Bounded: image removal waits on every container lock, and a wedged container would hang us.
  timeout 30 docker image rm "$old_id" >/dev/null 2>&1 || true
fi

got="$(docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges "$IMAGE" sh -c 'id -u; echo ok')"
[ "$got" = "$(printf '65534\nok')" ] || die "smoke run of $IMAGE printed unexpected output: $got"

size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE (+ ${ALIASES[*]}), $((size / 1024)) KiB, in $((SECONDS - START))s"
