#!/usr/bin/env bash
# Build the Python data-science runtime image `holdout-python:1` without pulling anything.
#
# Why not the Dockerfile next to this script: the hosts Holdout runs on may not reach any image
# registry, but they do reach a Debian mirror. So we debootstrap a minimal bookworm root
# filesystem with Debian's python3, numpy, pandas and scikit-learn and `docker import` it.
# Sandbox-image contract (shared with ./Dockerfile):
#   LABEL holdout.runtime=python-1, USER 65534:65534 (nobody), WORKDIR /submission,
#   python3 on PATH, numpy/pandas/scikit-learn importable with no network and a read-only root.
#
# Usage: sandbox-images/python/build.sh [--force]
#   --force                 rebuild even if an image with the label is already present
# Environment:
#   HOLDOUT_DEBIAN_MIRROR   mirror to debootstrap from (default: the one apt already uses)
#   HOLDOUT_BUILD_DIR       parent of the temporary root filesystem (default: /var/tmp)
# Takes about 2-4 minutes (network and 2 cores); needs root (debootstrap chroots and mknods).
set -euo pipefail

IMAGE="holdout-python:1"
RUNTIME_LABEL="python-1"
SUITE="bookworm"
PACKAGES="python3,python3-numpy,python3-pandas,python3-sklearn"
START=$SECONDS

log() { printf 'holdout python image [%3ds]: %s\n' "$((SECONDS - START))" "$*"; }
die() { printf 'holdout python image: error: %s\n' "$*" >&2; exit 1; }

FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    log "not root: re-running under sudo (debootstrap needs root)"
    exec sudo --preserve-env=HOLDOUT_DEBIAN_MIRROR,HOLDOUT_BUILD_DIR "$0" "$@"
  fi
  die "debootstrap needs root and sudo is not available; run this script as root"
fi

command -v docker >/dev/null 2>&1 || die "docker not found; run scripts/setup-docker.sh first"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer; run scripts/setup-docker.sh first"

present_label="$(docker image inspect --format '{{index .Config.Labels "holdout.runtime"}}' "$IMAGE" 2>/dev/null || true)"
if [ "$FORCE" -eq 0 ] && [ "$present_label" = "$RUNTIME_LABEL" ]; then
  log "$IMAGE already present (holdout.runtime=$RUNTIME_LABEL), skipping build"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found; run scripts/setup-docker.sh (installs it) or apt-get install debootstrap"

# The mirror apt already uses, so this works wherever `apt-get install` does.
# Reads deb822 files (sources.list.d/*.sources) and one-line files (sources.list, *.list).
detect_mirror() {
  local files=() f
  for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && files+=("$f"); done
  if [ "${#files[@]}" -gt 0 ]; then
    awk -v suite="$SUITE" '
      function flush() {
        if (!found && uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1 }
        uris = ""; suites = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/   { sub(/^URIs:[[:space:]]*/, "");   uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { flush() }
    ' "${files[@]}" | head -n1
  fi
  files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && files+=("$f"); done
  if [ "${#files[@]}" -gt 0 ]; then
    awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }
    ' "${files[@]}" | head -n1
  fi
}
MIRROR="${HOLDOUT_DEBIAN_MIRROR:-$(detect_mirror | head -n1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

BUILD_PARENT="${HOLDOUT_BUILD_DIR:-/var/tmp}"
ROOTFS="$(mktemp -d "$BUILD_PARENT/holdout-python-rootfs.XXXXXX")"
TMP_TAG="holdout-python:building-$$"

cleanup() {
  # debootstrap mounts proc/sys inside the target and may leave them behind on failure:
  # unmount everything below the root filesystem (deepest first) before deleting it, and
  # never let rm cross into another filesystem.
  if [ -n "${ROOTFS:-}" ] && [ -d "$ROOTFS" ]; then
    awk -v root="$ROOTFS" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf --one-file-system "$ROOTFS"
  fi
  timeout 30 docker image rm "$TMP_TAG" >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "building $IMAGE from Debian $SUITE ($MIRROR) in $ROOTFS"
log "debootstrap --variant=minbase --include=$PACKAGES (the slow step: downloads ~100 MB)"
DEBOOTSTRAP_LOG="$ROOTFS.debootstrap.log"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$DEBOOTSTRAP_LOG" 2>&1; then
  tail -n 30 "$DEBOOTSTRAP_LOG" >&2
  [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (full log: $DEBOOTSTRAP_LOG)"
fi
rm -f "$DEBOOTSTRAP_LOG"
log "debootstrap done ($(du -sh --one-file-system "$ROOTFS" | cut -f1))"

# Debian's python3-scipy depends on python3-pythran, which drags in gcc, g++ and ~200 MB of
# headers that nothing imports at run time. Purging them halves the image and leaves no compiler
# in the sandbox. --force-depends: dpkg would otherwise refuse because scipy "needs" pythran.
purge=()
# shellcheck disable=SC2016 # ${binary:Package} below is dpkg-query's format, not a shell variable
while read -r pkg; do
  case "${pkg%%:*}" in
    *-dev|gcc|gcc-12|g++|g++-12|cpp|cpp-12|python3-pythran|python3-beniget|python3-gast|\
    binutils|binutils-common|binutils-x86-64-linux-gnu|libbinutils|libctf0|libctf-nobfd0|\
    libgprofng0|libjansson4|libasan8|libtsan2|liblsan0|libubsan1|libhwasan0|libcc1-0|\
    libisl23|libmpc3|libmpfr6|libc-dev-bin|libitm1)
      purge+=("$pkg") ;;
  esac
done < <(chroot "$ROOTFS" dpkg-query -W -f='${binary:Package}\n')
if [ "${#purge[@]}" -gt 0 ]; then
  log "purging the build toolchain the scipy package pulls in (${#purge[@]} packages)"
  chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive dpkg --purge --force-depends "${purge[@]}" >/dev/null 2>&1 ||
    die "dpkg --purge of the toolchain failed"
fi

log "stripping apt caches, docs, man pages and locales"
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/usr/share/bug \
       "$ROOTFS"/debootstrap
# Test suites shipped inside the Debian packages are dead weight in a sandbox.
find "$ROOTFS"/usr/lib/python3/dist-packages -type d -name tests -prune -exec rm -rf {} + 2>/dev/null || true
# Mount points of a run; docker would create them, but a read-only image is easier to reason about.
mkdir -p "$ROOTFS"/submission "$ROOTFS"/data "$ROOTFS"/output
chmod 1777 "$ROOTFS"/tmp
log "root filesystem is $(du -sh --one-file-system "$ROOTFS" | cut -f1) after stripping"

log "docker import as $TMP_TAG"
# dev/ proc/ sys/ contents are provided by the engine at run time; device nodes don't belong in a layer.
tar -C "$ROOTFS" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
  docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV HOME=/tmp' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV OPENBLAS_NUM_THREADS=1' \
    --change 'ENV OMP_NUM_THREADS=1' \
    --change 'ENV MKL_NUM_THREADS=1' \
    --change 'USER 65534:65534' \
    --change 'WORKDIR /submission' \
    --change "LABEL holdout.runtime=$RUNTIME_LABEL" \
    --change 'CMD ["python3"]' \
    --message "holdout python runtime ($SUITE, debootstrap from $MIRROR)" \
    - "$TMP_TAG" >/dev/null

log "checking the image the way a locked-down run uses it"
check='
import warnings; warnings.simplefilter("ignore")
import numpy, pandas, sklearn, scipy
from sklearn.datasets import load_digits
d = load_digits()
assert d.data.shape == (1797, 64), d.data.shape
from sklearn.linear_model import LogisticRegression
import pandas.testing, scipy.optimize, scipy.sparse, sklearn.svm, sklearn.ensemble, sklearn.model_selection
acc = LogisticRegression(max_iter=200).fit(d.data[:1000], d.target[:1000]).score(d.data[1000:], d.target[1000:])
assert acc > 0.9, acc
print("python", __import__("sys").version.split()[0], "numpy", numpy.__version__,
      "pandas", pandas.__version__, "sklearn", sklearn.__version__, "digits", d.data.shape)
'
if ! out="$(docker run --rm --network none --read-only --user 65534:65534 --cap-drop ALL \
      --security-opt no-new-privileges --tmpfs /tmp:size=64m "$TMP_TAG" python3 -c "$check" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "the freshly built image failed its import check; not tagging $IMAGE"
fi
log "check passed: $out"

old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
docker tag "$TMP_TAG" "$IMAGE"
# A --force rebuild leaves the previous image untagged: drop it unless something still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  # Bounded: image removal waits on every container lock, and a wedged container would hang us.
  timeout 30 docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE ($((size / 1024 / 1024)) MiB) in $((SECONDS - START))s"
