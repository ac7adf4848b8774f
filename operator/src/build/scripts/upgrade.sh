#!/usr/bin/env bash
# Run by the database pod's init container before PostgreSQL starts: a
# database initialised by an earlier layout (the instance's role as
# superuser) is brought to this one by 10-atoll-roles.sh, on a temporary
# server that listens on a private Unix socket only. Nothing to do for a
# fresh volume (the image runs that script itself) or once done.
set -Eeuo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ] || [ -e "$PGDATA/atoll-roles-layout" ]; then
	exit 0
fi
socket=$(mktemp -d)
pg_ctl -D "$PGDATA" -w start \
	-o "-c listen_addresses='' -c unix_socket_directories='$socket' -p ${PGPORT:-5432}"
stop() { pg_ctl -D "$PGDATA" -m fast -w stop; rm -rf "$socket"; }
trap stop EXIT
export PGHOST="$socket" PGPORT="${PGPORT:-5432}"
# Sourced, as the image does with its init scripts.
. "$(dirname "$0")/10-atoll-roles.sh"
