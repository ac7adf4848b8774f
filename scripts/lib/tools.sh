# Shared by scripts/test and scripts/sandbox: install what Atoll's tests and
# sandbox need when it is missing, from the distribution's packages. Source
# it; it defines functions and changes nothing by itself.

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1
  fi
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The PostgreSQL server binaries' folder (initdb, pg_ctl, postgres).
find_pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null && dirname "$(readlink -f "$(command -v initdb)")" && return 0
  return 1
}

# Exports ATOLL_PG_BINDIR, installing the PostgreSQL server when missing:
# throwaway test databases and the sandbox's tenant databases run on it.
ensure_postgres() {
  if ! ATOLL_PG_BINDIR=$(find_pg_bindir); then
    log "installing PostgreSQL server binaries"
    apt_install postgresql
    ATOLL_PG_BINDIR=$(find_pg_bindir)
  fi
  export ATOLL_PG_BINDIR
}
