#!/bin/sh
# RabbitMQ with its management plugin, as the container image runs it. On start it writes the
# default user from RABBITMQ_DEFAULT_USER and the password in the file RABBITMQ_DEFAULT_PASS_FILE
# (an administrator: Drover makes a broker user per node and per plugin) and listens on
# RABBITMQ_NODE_PORT (5672) and RABBITMQ_MANAGEMENT_PORT (15672).
set -eu
conf=/etc/rabbitmq/conf.d/10-drover.conf
mkdir -p /etc/rabbitmq/conf.d
{
    echo "listeners.tcp.default = ${RABBITMQ_NODE_PORT:-5672}"
    echo "management.tcp.port = ${RABBITMQ_MANAGEMENT_PORT:-15672}"
    echo "loopback_users = none"
    if [ -n "${RABBITMQ_DEFAULT_USER:-}" ] && [ -n "${RABBITMQ_DEFAULT_PASS_FILE:-}" ]; then
        echo "default_user = $RABBITMQ_DEFAULT_USER"
        echo "default_pass = $(cat "$RABBITMQ_DEFAULT_PASS_FILE")"
        echo "default_user_tags.administrator = true"
    fi
} >"$conf"
chown rabbitmq:rabbitmq "$conf" /var/lib/rabbitmq
chmod 0600 "$conf"
# Named after its port: with the host's network, nodes on one machine share its epmd.
export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-rabbit-${RABBITMQ_NODE_PORT:-5672}@localhost} HOME=/var/lib/rabbitmq
# The server itself, not Debian's wrapper: it stops gracefully on SIGTERM.
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
