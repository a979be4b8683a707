#!/usr/bin/env bash
# Installs what orderflow needs beyond Go: the PostgreSQL server binaries
# (initdb, postgres), from the distribution's packages, when they are missing.
# Run once per machine; `make run` and `make test` download nothing.
set -euo pipefail
have_pg() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if have_pg; then
  echo "prerequisites: PostgreSQL server binaries found"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "prerequisites: PostgreSQL server binaries (initdb, postgres) are missing." >&2
  echo "Install them with your package manager (Debian/Ubuntu: sudo apt-get install postgresql)," >&2
  echo "(orderflow dev alone can use an existing PostgreSQL through DATABASE_URL; make test needs the binaries)." >&2
  exit 1
fi
echo "prerequisites: installing PostgreSQL server binaries (apt-get install postgresql)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
have_pg
