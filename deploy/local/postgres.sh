#!/usr/bin/env bash
# deploy/local/postgres.sh start|stop|status DIR [PORT]
#
# A throwaway PostgreSQL 15 cluster in DIR, listening on 127.0.0.1:PORT only (default 5440),
# with a role and database `drover` (password `drover`).
# URL: postgres://drover:drover@127.0.0.1:PORT/drover
# initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
# With DROVER_TLS_DIR (see tls-certs) it also accepts TLS with DIR's server.pem
# (postgres://…?sslmode=verify-full&sslrootcert=DIR/ca.pem, host localhost).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cmd=${1:?usage: postgres.sh start|stop|status DIR [PORT]}
DIR=${2:?data directory}
PORT=${3:-5440}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
AS=()
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); fi

start() {
    ensure_debian_packages postgresql-15 postgresql-client-15
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$DIR"
        runuser -u postgres -- test -x "$DIR" \
            || die "the postgres user cannot reach $DIR; use a data directory whose parents every user may enter (chmod o+x)"
    fi
    if "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then say "postgres already running on 127.0.0.1:$PORT"; return 0; fi
    port_open "$PORT" && die "port $PORT is taken by another process; choose another port"
    local fresh=
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        "${AS[@]}" "$PG_BIN/initdb" -D "$DIR/data" -U postgres -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 > "$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
        fresh=1
    fi
    local tls=""
    if [ -n "${DROVER_TLS_DIR:-}" ]; then
        # The server's key must be its own user's, readable by it alone.
        install -m 600 "$DROVER_TLS_DIR/server-key.pem" "$DIR/server-key.pem"
        install -m 644 "$DROVER_TLS_DIR/server.pem" "$DIR/server.pem"
        if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR/server-key.pem" "$DIR/server.pem"; fi
        tls="-c ssl=on -c ssl_cert_file=$DIR/server.pem -c ssl_key_file=$DIR/server-key.pem"
    fi
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 start \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=600 $tls ${DROVER_PG_OPTIONS:-}" >/dev/null \
        || { tail -20 "$DIR/postgres.log" >&2; die "postgres did not start; see $DIR/postgres.log"; }
    if [ -n "$fresh" ]; then
        "${AS[@]}" "$PG_BIN/psql" -q -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE drover LOGIN CREATEDB PASSWORD 'drover'" -c "CREATE DATABASE drover OWNER drover" >/dev/null
    fi
    say "postgres ready: postgres://drover:drover@127.0.0.1:$PORT/drover"
}

stop() {
    [ -f "$DIR/data/PG_VERSION" ] || return 0
    if "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    fi
    say "postgres on 127.0.0.1:$PORT stopped"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1 && echo running || { echo stopped; exit 1; } ;;
    *) die "unknown command $cmd (start|stop|status)" ;;
esac
