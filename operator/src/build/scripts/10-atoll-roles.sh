# Atoll: the instance's role owns its database and nothing more.
#
# Sourced by the postgres image from /docker-entrypoint-initdb.d on first
# initialisation (the server listens on its Unix socket only), and by
# upgrade.sh (the pod's init container) for a database initialised by an
# earlier layout, where the instance's role was the bootstrap superuser:
# that role becomes `postgres`, and a new role of the instance's name, with
# no privilege beyond owning its database, takes over the database and
# everything in it. Idempotent. Never exits: the image sources it.
#
# Environment: ATOLL_DATABASE_USER, ATOLL_DATABASE_PASSWORD,
# ATOLL_DATABASE_NAME, optional ATOLL_DATABASE_ADMIN_PASSWORD (else the
# superuser has no password: it logs in through the Unix socket only), and
# PGDATA. The server is found through libpq's defaults (PGHOST, PGPORT).

atoll_roles() {
	local user="${ATOLL_DATABASE_USER:-atoll}" db="${ATOLL_DATABASE_NAME:-atoll}"
	local psql=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --quiet)
	local boot
	# The bootstrap superuser: `postgres`, or the instance's role in a
	# database initialised before this layout.
	boot=$("${psql[@]}" -At --username postgres --dbname postgres \
		-c 'SELECT rolname FROM pg_roles WHERE oid = 10' 2>/dev/null) ||
		boot=$("${psql[@]}" -At --username "$user" --dbname postgres \
			-c 'SELECT rolname FROM pg_roles WHERE oid = 10') || return 1
	if [ "$boot" = "$user" ]; then
		echo "atoll: role $user is the bootstrap superuser: renaming it to postgres"
		# A role cannot rename itself: a helper superuser does it.
		"${psql[@]}" --username "$user" --dbname postgres \
			-c 'DROP ROLE IF EXISTS atoll_upgrade' \
			-c 'CREATE ROLE atoll_upgrade SUPERUSER LOGIN' || return 1
		"${psql[@]}" --username atoll_upgrade --dbname postgres -v user="$user" <<'SQL' || return 1
ALTER ROLE :"user" RENAME TO postgres;
SQL
		"${psql[@]}" --username postgres --dbname postgres \
			-c 'DROP ROLE atoll_upgrade' || return 1
	elif [ "$boot" != postgres ]; then
		echo "atoll: the bootstrap superuser is $boot, expected postgres or $user" >&2
		return 1
	fi

	local admin=()
	if [ -n "${ATOLL_DATABASE_ADMIN_PASSWORD:-}" ]; then
		admin=(-v "admin_password=$ATOLL_DATABASE_ADMIN_PASSWORD")
	fi
	"${psql[@]}" --username postgres --dbname postgres -v user="$user" -v db="$db" \
		-v "password=${ATOLL_DATABASE_PASSWORD:?ATOLL_DATABASE_PASSWORD is required}" \
		"${admin[@]}" <<'SQL' || return 1
SELECT format('CREATE ROLE %I', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS INHERIT PASSWORD :'password';
-- No membership in any other role (predefined ones included).
SELECT format('REVOKE %I FROM %I', r.rolname, :'user')
  FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
 WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = :'user') \gexec
\if :{?admin_password}
ALTER ROLE postgres WITH PASSWORD :'admin_password';
\else
ALTER ROLE postgres WITH PASSWORD NULL;
\endif
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"user";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
\connect :"db"
ALTER SCHEMA public OWNER TO :"user";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- What the bootstrap superuser owns here: the instance's objects of an
-- earlier layout. Tables take their sequences along.
SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, :'user')
  FROM pg_namespace n
 WHERE n.nspowner = 10 AND n.nspname <> 'information_schema'
   AND n.nspname NOT LIKE 'pg\_%' \gexec
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              n.nspname, c.relname, :'user')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relowner = 10 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%' \gexec
SELECT format('ALTER SEQUENCE %I.%I OWNER TO %I', n.nspname, c.relname, :'user')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relowner = 10 AND c.relkind = 'S'
   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%' \gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, :'user')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proowner = 10 AND p.prokind <> 'a' AND n.nspname <> 'information_schema'
   AND n.nspname NOT LIKE 'pg\_%' \gexec
SELECT format('ALTER %s %s OWNER TO %I',
              CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
              t.oid::regtype, :'user')
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typowner = 10 AND t.typtype IN ('c', 'd', 'e', 'r')
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
   AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%' \gexec
SQL
	# Later starts need not look again (upgrade.sh checks this file).
	echo 1 >"$PGDATA/atoll-roles-layout" || return 1
}

atoll_roles
