#!/usr/bin/env bash
# Make PostgreSQL's server binaries available for Holdout's scale-out tests and benchmark, on
# Debian 12: installs Debian's `postgresql` package (PostgreSQL 15) when `initdb` is missing.
#
# Idempotent. No cluster is left running: each test that needs PostgreSQL makes its own
# throw-away cluster (`initdb` in a temporary folder, `pg_ctl` on a free loopback port, as
# the `postgres` user; see src/testing.rs), so the package's default cluster is not started
# (and is stopped if the package's scripts started it anyway).
#
# A production deployment runs its own PostgreSQL 15+; see the README's "Scaling out".
set -euo pipefail

say() { printf 'holdout setup: %s\n' "$*"; }
die() { printf 'holdout setup: error: %s\n' "$*" >&2; exit 1; }

have_initdb() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if have_initdb; then
  say "postgresql server binaries already installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "installing postgresql needs root (or sudo)"
  say "installing postgresql needs root; re-running with sudo"
  exec sudo --preserve-env=DEBIAN_FRONTEND "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive
say "installing postgresql (apt-get, quiet)"
# Keep package scripts from starting the default cluster: tests start their own.
policy_created=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  policy_created=1
  trap '[ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
NEEDRESTART_SUSPEND=1 apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends postgresql >/dev/null
if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; policy_created=0; fi
# Should a default cluster run anyway (systemd ignoring policy-rc.d), stop it: it is not ours.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version name _ status _; do
    if [ "$status" = online ]; then
      pg_ctlcluster "$version" "$name" stop || true
    fi
  done
fi
have_initdb || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
id postgres >/dev/null 2>&1 || die "postgresql installed but there is no postgres user"
say "installed postgresql: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
