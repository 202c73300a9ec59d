#!/usr/bin/env bash
# Idempotent set-up of everything pingedchat needs on a Debian/Ubuntu host:
# PostgreSQL (installed, running, with a role and database for the current OS user),
# Chromium for the browser tests, podman for the container image's test, and the Go modules.
# Prints what it did. PINGED_SKIP_BROWSER=1 and PINGED_SKIP_PODMAN=1 leave those out.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'add_deps: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
need_pkg() { # need_pkg <command-to-check> <package...>
  local check=$1; shift
  if command -v "$check" >/dev/null 2>&1 || [ -x "$check" ]; then
    say "$* already installed"; return
  fi
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

need_pkg pg_ctlcluster postgresql
if [ "${PINGED_SKIP_BROWSER:-}" != 1 ]; then
  need_pkg /usr/bin/chromium chromium
fi
# Podman builds and runs the container image in TestContainerImage (it skips without it);
# runc too, since crun refuses hosts with cgroups v1 and v2 mounted together.
# Without recommends: 17 small packages rather than a desktop's worth.
if [ "${PINGED_SKIP_PODMAN:-}" != 1 ]; then
  if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1; then
    say "podman runc already installed"
  else
    if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    say "installing podman runc"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends podman runc >/dev/null
  fi
fi

# Start the newest installed cluster if it is not running (Debian's pg_ctlcluster layout).
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main"' | grep -q .; then
  say "creating PostgreSQL $ver cluster main"
  as_root pg_createcluster "$ver" main >/dev/null
fi
if pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
  say "PostgreSQL $ver/main already running"
else
  say "starting PostgreSQL $ver/main"
  as_root pg_ctlcluster "$ver" main start
fi

# A role for the OS user that runs the server and the tests (peer authentication on the
# socket), allowed to create databases: the tests make a fresh database per run.
user=$(id -un)
psql_pg() { as_root su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -tA $(printf '%q ' "$@")"; }
for i in $(seq 1 50); do psql_pg -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
if [ "$(psql_pg -c "select 1 from pg_roles where rolname = '$user'")" = 1 ]; then
  say "role $user exists"
else
  say "creating role $user"
  psql_pg -c "create role \"$user\" login createdb"
fi
if [ "$(psql_pg -c "select 1 from pg_database where datname = 'pingedchat'")" = 1 ]; then
  say "database pingedchat exists"
else
  say "creating database pingedchat"
  psql_pg -c "create database pingedchat owner \"$user\""
fi

say "downloading Go modules"
go mod download
say "done"
