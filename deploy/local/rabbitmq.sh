#!/usr/bin/env bash
# deploy/local/rabbitmq.sh start|stop|restart|status DIR [PORT]
#
# A throwaway RabbitMQ node with its own data directory, listening on 127.0.0.1:PORT only
# (default 5680), management API on PORT+10000, a private epmd port, so it never touches
# another broker on the machine. Ready when the AMQP port accepts connections.
# URL: amqp://guest:guest@127.0.0.1:PORT (guest may log in from loopback only).
# With DROVER_TLS_DIR (see tls-certs) and DROVER_RABBITMQ_TLS_PORT it also listens for AMQP over
# TLS on 127.0.0.1:DROVER_RABBITMQ_TLS_PORT with DIR's server.pem: amqps://guest:guest@localhost:PORT.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cmd=${1:?usage: rabbitmq.sh start|stop|restart|status DIR [PORT]}
DIR=${2:?data directory}
PORT=${3:-5680}
MGMT=$((PORT + 10000))
EPMD=$((PORT - 1300))

mkdir -p "$DIR"/home "$DIR"/mnesia "$DIR"/log
DIR=$(cd "$DIR" && pwd)

write_env() {
    cat > "$DIR/env.sh" <<ENV
export HOME=$DIR/home PATH=$RABBIT_BIN:\$PATH ERL_EPMD_PORT=$EPMD
export RABBITMQ_CONF_ENV_FILE=$DIR/rabbitmq-env.conf RABBITMQ_NODENAME=drover$PORT@localhost
export RABBITMQ_NODE_PORT=$PORT RABBITMQ_DIST_PORT=$((PORT + 20000)) RABBITMQ_PID_FILE=$DIR/rabbit.pid
export RABBITMQ_MNESIA_BASE=$DIR/mnesia RABBITMQ_LOG_BASE=$DIR/log RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf
export RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins
ENV
    : > "$DIR/rabbitmq-env.conf"
    cat > "$DIR/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$PORT
management.tcp.port = $MGMT
management.tcp.ip = 127.0.0.1
disk_free_limit.absolute = 50MB
loopback_users.guest = true
# The bus refuses larger messages itself (AMQPBus.Configuration.maximumMessageBytes); the two agree.
max_message_size = 16777216
CONF
    if [ -n "${DROVER_TLS_DIR:-}" ] && [ -n "${DROVER_RABBITMQ_TLS_PORT:-}" ]; then
        cat >> "$DIR/rabbitmq.conf" <<CONF
listeners.ssl.1 = 127.0.0.1:$DROVER_RABBITMQ_TLS_PORT
ssl_options.cacertfile = $DROVER_TLS_DIR/ca.pem
ssl_options.certfile = $DROVER_TLS_DIR/server.pem
ssl_options.keyfile = $DROVER_TLS_DIR/server-key.pem
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
    fi
    echo '[rabbitmq_management].' > "$DIR/enabled_plugins"
    if [ ! -f "$DIR/home/.erlang.cookie" ]; then
        head -c 30 /dev/urandom | base64 | tr -dc A-Za-z0-9 > "$DIR/home/.erlang.cookie"
        chmod 400 "$DIR/home/.erlang.cookie"
    fi
}

start() {
    ensure_debian_packages rabbitmq-server curl
    if pid_alive "$DIR/server.pid" && port_open "$PORT"; then say "rabbitmq already running on 127.0.0.1:$PORT"; return 0; fi
    port_open "$PORT" && die "port $PORT is taken by another process; choose another port"
    write_env
    # shellcheck disable=SC1091
    . "$DIR/env.sh"
    local t0; t0=$(date +%s%N)
    daemonize "$DIR/log/console.log" rabbitmq-server > "$DIR/server.pid"
    for _ in $(seq 1 600); do
        # Ready once AMQP and the management API (which node enrolment uses) both answer.
        if port_open "$PORT" && curl -sf -o /dev/null -u guest:guest "http://127.0.0.1:$MGMT/api/overview"; then
            say "rabbitmq ready on 127.0.0.1:$PORT (management 127.0.0.1:$MGMT) after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
            return 0
        fi
        pid_alive "$DIR/server.pid" || { tail -20 "$DIR/log/console.log" >&2; die "rabbitmq exited during start; see $DIR/log"; }
        sleep 0.1
    done
    die "rabbitmq not ready after 60 s; see $DIR/log"
}

stop() {
    [ -f "$DIR/env.sh" ] || return 0
    # shellcheck disable=SC1091
    . "$DIR/env.sh"
    if pid_alive "$DIR/server.pid"; then
        local pid; pid=$(cat "$DIR/server.pid")
        rabbitmqctl -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$DIR/server.pid"
    epmd -port "$EPMD" -kill >/dev/null 2>&1 || true
    say "rabbitmq on 127.0.0.1:$PORT stopped"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) if pid_alive "$DIR/server.pid" && port_open "$PORT"; then echo running; else echo stopped; exit 1; fi ;;
    *) die "unknown command $cmd (start|stop|restart|status)" ;;
esac
