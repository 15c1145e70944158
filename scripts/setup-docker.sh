#!/usr/bin/env bash
# Make a Docker Engine with the gVisor runtime (`runsc`) available for Holdout, on Debian 12.
#
# Idempotent: if `docker info` already answers, it only checks that `runsc` is registered
# (registering it and reloading the daemon if it is not) and exits.
# Otherwise it installs Debian's docker.io, runsc, busybox-static and debootstrap, registers
# runsc in the daemon config and starts dockerd: through systemd when systemd is PID 1, or
# detached by hand (`dockerd --bridge=none --iptables=false`, log in $HOLDOUT_DOCKERD_LOG)
# when it is not, as on our CI machines and dev boxes.
#
# Why --bridge=none --iptables=false: sandboxes run with --network none anyway, and these
# hosts have no usable iptables. Why runsc gets --network=none: without it runsc refuses to
# start on these hosts.
#
# Environment (defaults are what CI uses; the overrides exist to test this script against a
# second, throw-away daemon):
#   HOLDOUT_DOCKERD_LOG      dockerd log file            (/var/log/holdout-dockerd.log)
#   HOLDOUT_DAEMON_JSON      daemon config file          (/etc/docker/daemon.json)
#   HOLDOUT_DOCKERD_PIDFILE  dockerd pid file            (/var/run/docker.pid)
#   HOLDOUT_DOCKERD_ARGS     extra dockerd arguments     (none)
#   HOLDOUT_ALLOW_NO_RUNSC=1 warn instead of failing when runsc can't be registered
#   DOCKER_HOST              honoured by every docker CLI call, as usual
set -euo pipefail

LOG_FILE="${HOLDOUT_DOCKERD_LOG:-/var/log/holdout-dockerd.log}"
DAEMON_JSON="${HOLDOUT_DAEMON_JSON:-/etc/docker/daemon.json}"
PIDFILE="${HOLDOUT_DOCKERD_PIDFILE:-/var/run/docker.pid}"
EXTRA_ARGS="${HOLDOUT_DOCKERD_ARGS:-}"
START_TIMEOUT=60
PACKAGES=(docker.io runsc busybox-static debootstrap)

say() { printf 'holdout setup: %s\n' "$*"; }
die() { printf 'holdout setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  # Re-run this script as root with the same environment knobs, or explain why we can't.
  local why="$1"
  shift
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null 2>&1; then
    say "$why: re-running under sudo"
    exec sudo --preserve-env=HOLDOUT_DOCKERD_LOG,HOLDOUT_DAEMON_JSON,HOLDOUT_DOCKERD_PIDFILE,HOLDOUT_DOCKERD_ARGS,HOLDOUT_ALLOW_NO_RUNSC,DOCKER_HOST "$0" "$@"
  fi
  die "$why, which needs root, and sudo is not available; run this script as root"
}

docker_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

runsc_registered() {
  docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null | tr ' ' '\n' | grep -qx runsc
}

runsc_path() { command -v runsc 2>/dev/null || echo /usr/bin/runsc; }

# Add {"runtimes": {"runsc": {...}}} to the daemon config without losing anything else in it.
# A file we change is first backed up next to itself.
write_daemon_json() {
  local path want
  path="$(runsc_path)"
  want="{\"runtimes\": {\"runsc\": {\"path\": \"$path\", \"runtimeArgs\": [\"--network=none\"]}}}"
  mkdir -p "$(dirname "$DAEMON_JSON")"
  if [ ! -s "$DAEMON_JSON" ]; then
    printf '%s\n' "$want" >"$DAEMON_JSON"
    say "wrote $DAEMON_JSON (runsc runtime with --network=none)"
    return 0
  fi
  local py
  py="$(command -v python3 || true)"
  [ -x /usr/bin/python3 ] && py=/usr/bin/python3
  [ -n "$py" ] || die "$DAEMON_JSON exists and python3 is not available to merge it; add this to it by hand: $want"
  local status
  status="$("$py" - "$DAEMON_JSON" "$path" <<'PY'
import json, sys
path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        cfg = json.load(f)
except ValueError as e:
    print("invalid: %s" % e)
    sys.exit(0)
want = {"path": runsc, "runtimeArgs": ["--network=none"]}
if not isinstance(cfg, dict):
    print("invalid: top level is not an object")
elif cfg.get("runtimes", {}).get("runsc") == want:
    print("ok")
else:
    print("merge")
PY
)"
  case "$status" in
    ok) say "$DAEMON_JSON already registers runsc" ;;
    merge)
      local backup
      backup="$DAEMON_JSON.bak.$(date +%Y%m%d%H%M%S)"
      cp -p "$DAEMON_JSON" "$backup"
      "$py" - "$DAEMON_JSON" "$path" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
with open(path) as f:
    cfg = json.load(f)
cfg.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
PY
      say "merged the runsc runtime into $DAEMON_JSON (previous version saved as $backup)"
      ;;
    *) die "$DAEMON_JSON is not valid JSON ($status); fix or move it away, then re-run" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Already running: check runsc only.
if docker_answers; then
  version="$(docker info --format '{{.ServerVersion}}' 2>/dev/null)"
  if runsc_registered; then
    say "docker $version already answers, runsc registered; nothing to do"
    exit 0
  fi
  say "WARNING: docker $version answers but the runsc (gVisor) runtime is NOT registered"
  if ! command -v runsc >/dev/null 2>&1; then
    msg="runsc is not installed (apt-get install runsc), so gVisor isolation is unavailable"
    [ "${HOLDOUT_ALLOW_NO_RUNSC:-}" = 1 ] && { say "WARNING: $msg"; exit 0; }
    die "$msg; install it and re-run this script (or set HOLDOUT_ALLOW_NO_RUNSC=1)"
  fi
  as_root "registering runsc in $DAEMON_JSON" "$@"
  write_daemon_json
  # dockerd reloads its runtimes on SIGHUP without stopping containers.
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    say "asking dockerd (pid $pid) to reload its configuration (SIGHUP)"
    kill -HUP "$pid"
    for _ in $(seq 1 10); do runsc_registered && break; sleep 1; done
  fi
  if runsc_registered; then
    say "runsc is now registered"
    exit 0
  fi
  msg="runsc is still not registered; restart dockerd so it reads $DAEMON_JSON"
  [ "${HOLDOUT_ALLOW_NO_RUNSC:-}" = 1 ] && { say "WARNING: $msg"; exit 0; }
  die "$msg (or set HOLDOUT_ALLOW_NO_RUNSC=1 to go on without gVisor)"
fi

# ---------------------------------------------------------------------------------------------
# Fresh machine (or a stopped daemon).
as_root "docker does not answer; installing and starting it" "$@"
export DEBIAN_FRONTEND=noninteractive

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} (apt-get, quiet)"
  # Keep package scripts from starting services: we start dockerd ourselves with our flags.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
    trap '[ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  # With Recommends on purpose: they bring cgroupfs-mount and apparmor, which dockerd needs on
  # hosts without systemd. NEEDRESTART_SUSPEND keeps needrestart from touching services.
  NEEDRESTART_SUSPEND=1 apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; policy_created=0; fi
  say "installed ${missing[*]}"
else
  say "packages already installed: ${PACKAGES[*]}"
fi

write_daemon_json

if [ -d /run/systemd/system ]; then
  say "systemd is init: (re)starting docker.service"
  systemctl enable docker.service >/dev/null 2>&1 || true
  systemctl restart docker.service
else
  # Without systemd nobody mounts the cgroup hierarchies at boot unless the host's init does.
  if ! grep -qE '^[^ ]+ [^ ]+ cgroup2? ' /proc/mounts && command -v cgroupfs-mount >/dev/null 2>&1; then
    say "no cgroup filesystem mounted; running cgroupfs-mount"
    cgroupfs-mount
  fi
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    say "dockerd (pid $pid) is already running but not answering yet; waiting for it"
  else
    say "no systemd; starting dockerd --bridge=none --iptables=false in the background (log: $LOG_FILE)"
    mkdir -p "$(dirname "$LOG_FILE")"
    # setsid + nohup + no stdin: the daemon outlives this script and any CI step it runs in.
    # shellcheck disable=SC2086 # EXTRA_ARGS is a list of words on purpose
    setsid nohup dockerd --bridge=none --iptables=false \
      --config-file "$DAEMON_JSON" --pidfile "$PIDFILE" $EXTRA_ARGS \
      </dev/null >>"$LOG_FILE" 2>&1 &
    started_pid=$!
    say "dockerd started (pid $started_pid)"
  fi
fi

say "waiting up to ${START_TIMEOUT}s for docker to answer"
deadline=$((SECONDS + START_TIMEOUT))
started_pid="${started_pid:-}"
until docker info >/dev/null 2>&1; do
  exited=0
  if [ -n "$started_pid" ] && ! kill -0 "$started_pid" 2>/dev/null; then exited=1; fi
  if [ "$exited" = 1 ] || [ "$SECONDS" -ge "$deadline" ]; then
    if [ "$exited" = 1 ]; then
      say "dockerd exited during start-up; last lines of $LOG_FILE:"
    else
      say "docker did not answer within ${START_TIMEOUT}s; last lines of $LOG_FILE:"
    fi
    tail -n 40 "$LOG_FILE" 2>/dev/null | sed 's/^/    /' >&2 || true
    if [ -d /run/systemd/system ]; then journalctl -u docker.service -n 40 --no-pager >&2 || true; fi
    die "dockerd did not start"
  fi
  sleep 1
done
version="$(docker info --format '{{.ServerVersion}}')"

if runsc_registered; then
  say "docker $version is up with runtimes: $(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}')"
else
  msg="docker $version is up but runsc is NOT among its runtimes; check $DAEMON_JSON and $LOG_FILE"
  [ "${HOLDOUT_ALLOW_NO_RUNSC:-}" = 1 ] && { say "WARNING: $msg"; exit 0; }
  die "$msg"
fi
