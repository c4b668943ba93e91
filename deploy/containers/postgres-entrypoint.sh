#!/bin/sh
# PostgreSQL 15, as the container image runs it. On the first start (an empty PGDATA) it makes
# the cluster, the role POSTGRES_USER with the password in the file POSTGRES_PASSWORD_FILE, and
# the database POSTGRES_DB; then it listens on every address, on PGPORT (5432).
set -eu
bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
run() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$data" /run/postgresql
chown postgres:postgres "$data" /run/postgresql
chmod 0700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
    user=${POSTGRES_USER:?set POSTGRES_USER}
    password=$(cat "${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE}")
    run "$bin/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$data/pg_hba.conf"
    run "$bin/pg_ctl" -D "$data" -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" -w start >/dev/null
    run psql -v ON_ERROR_STOP=1 -q -h /run/postgresql -U postgres -v user="$user" -v password="$password" -v db="${POSTGRES_DB:-$user}" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
    run "$bin/pg_ctl" -D "$data" -w stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$data" -c listen_addresses='*' -p "${PGPORT:-5432}" \
    -c unix_socket_directories=/run/postgresql
