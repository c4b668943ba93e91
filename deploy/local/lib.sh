# Shared helpers for deploy/local scripts. Source it; do not run it.
# shellcheck shell=bash

DROVER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
RABBIT_BIN=/usr/lib/rabbitmq/bin

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ensure_debian_packages PKG...: installs what is missing when root, else says what to install.
ensure_debian_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        die "missing Debian packages: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}"
    fi
    say "installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    # The package scripts must not start system-wide servers: Drover runs its own.
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
    local rc=$?
    [ -n "$created_policy" ] && rm -f "$policy"
    [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE: true when the pid in PIDFILE is a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE [SECONDS]: SIGTERM, wait, SIGKILL; removes PIDFILE. Safe to call twice.
stop_pid() {
    local file=$1 wait=${2:-15} pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 $((wait * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$file"
}

# daemonize LOG COMMAND...: starts COMMAND in a session of its own, output to LOG, and prints its
# pid. It inherits no descriptor beyond stdin/stdout/stderr, so a caller that waits for this
# script's pipes or sockets to close (a CI runner, a test harness) is not held up by the daemon.
daemonize() {
    local log=$1
    shift
    (
        for fd in /proc/self/fd/*; do
            n=${fd##*/}
            if [ "$n" -gt 2 ] && [ "$n" != 255 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
        done
        exec setsid "$@" > "$log" 2>&1 < /dev/null
    ) &
    echo $!
}

# supervise LOG PIDFILE COMMAND...: starts COMMAND as daemonize does, its pid in PIDFILE, its output
# appended to LOG (never overwritten). When it ends, a line in LOG says how (exit status or
# signal); a restart adds a line that names how the run before it ended. A LOG past 64 MiB is
# rotated first: LOG.1 … LOG.5, the oldest dropped.
supervise() {
    local log=$1 pidfile=$2 last
    shift 2
    rotate_log "$log" $((64 << 20)) 5
    if [ -s "$log" ]; then
        last=$(grep -a '^=== .* ended: ' "$log" | tail -1 | sed 's/^=== [^ ]* ended: //')
        printf '=== %s restarted; the run before it ended: %s\n' "$(date -u +%FT%TZ)" \
            "${last:-with no record (its supervisor was stopped, or the machine)}" >> "$log"
    fi
    rm -f "$pidfile"
    (
        for fd in /proc/self/fd/*; do
            n=${fd##*/}
            if [ "$n" -gt 2 ] && [ "$n" != 255 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
        done
        exec < /dev/null > /dev/null 2>&1
        setsid "$@" >> "$log" 2>&1 &
        child=$!
        echo "$child" > "$pidfile"
        status=0
        wait "$child" || status=$?
        if [ "$status" -gt 128 ]; then how="killed by signal $(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128)))"; else how="exit status $status"; fi
        printf '=== %s ended: %s\n' "$(date -u +%FT%TZ)" "$how" >> "$log"
    ) &
    for _ in $(seq 1 100); do [ -s "$pidfile" ] && return 0; sleep 0.05; done
    die "could not start $1"
}

# rotate_log LOG BYTES COUNT: when LOG is larger than BYTES, moves it to LOG.1 (LOG.1 to LOG.2, …),
# keeping COUNT rotated files.
rotate_log() {
    local log=$1 limit=$2 count=$3 i
    [ -f "$log" ] && [ "$(stat -c %s "$log")" -gt "$limit" ] || return 0
    rm -f "$log.$count"
    for ((i = count - 1; i >= 1; i--)); do [ -f "$log.$i" ] && mv "$log.$i" "$log.$((i + 1))"; done
    mv "$log" "$log.1"
}
