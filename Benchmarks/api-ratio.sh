#!/usr/bin/env bash
# The HTTP API's throughput at two commits, in one run: api-gateway built in release at BASE and
# at HEAD (the commit checked out; not the uncommitted changes), side by side, each on a database and a RabbitMQ virtual host of its own
# (servers of this script's own, on loopback ports 5700 and 5460), ACLs on, driven by wrk with a
# token whose policy is `namespace "default" { policy = "write" }` (so every per-object check
# runs). Rounds alternate base, head, head, base, …, so that a drift over the run weighs on both
# alike. GET /v1/jobs lists 200 jobs; POST /v1/jobs registers a new job each request.
# Prints each round, then the median requests per second of each side and their ratio
# (head / base) for each route.
#
# Usage: Benchmarks/api-ratio.sh [BASE] [SECONDS_PER_ROUND] [ROUNDS_EACH] [HEAD]
#   BASE defaults to 52b1c6a (before namespaced keys and the per-object checks). Needs wrk
#   (Debian's package, installed if missing) and the packages of deploy/local/test.
#   DROVER_BENCH_DIR (default .build-bench) keeps the base's checkout and the build between runs.
set -euo pipefail
BASE=${1:-52b1c6a}
SECONDS_PER_ROUND=${2:-10}
ROUNDS=${3:-3}
HEAD_COMMIT=$(git -C "$(dirname "$0")" rev-parse "${4:-HEAD}")
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../deploy/local/lib.sh
. "$here/deploy/local/lib.sh"
ensure_debian_packages wrk curl postgresql-client-15
WORK=${DROVER_BENCH_DIR:-$here/.build-bench}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
AMQP_PORT=5700
PG_PORT=5460

say "== building api-gateway in release at $BASE and at ${HEAD_COMMIT:0:12}"
for side in base head; do
    if [ ! -e "$WORK/$side/.git" ]; then git -C "$here" worktree add --detach -f "$WORK/$side" "$BASE" >/dev/null; fi
done
git -C "$WORK/base" checkout -q --detach "$BASE"
git -C "$WORK/head" checkout -q --detach "$HEAD_COMMIT"
# The same dependency versions on both sides, built once in one scratch folder: only Drover's
# own modules are built again for the other side.
cp "$here/Package.resolved" "$WORK/base/Package.resolved"
(cd "$WORK/base" && swift build -c release --product api-gateway --scratch-path "$WORK/build" >"$WORK/base-build.log" 2>&1) \
    || { tail -20 "$WORK/base-build.log" >&2; die "the base build failed; see $WORK/base-build.log"; }
cp "$WORK/build/release/api-gateway" "$WORK/api-gateway-base"
(cd "$WORK/head" && swift build -c release --product api-gateway --scratch-path "$WORK/build" >"$WORK/head-build.log" 2>&1) \
    || { tail -20 "$WORK/head-build.log" >&2; die "the head build failed; see $WORK/head-build.log"; }
cp "$WORK/build/release/api-gateway" "$WORK/api-gateway-head"

say "== servers"
bash "$here/deploy/local/rabbitmq.sh" start "$WORK/rabbitmq" "$AMQP_PORT" >/dev/null
DROVER_PG_OPTIONS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    bash "$here/deploy/local/postgres.sh" start "$WORK/postgres" "$PG_PORT" >/dev/null
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bash "$here/deploy/local/rabbitmq.sh" stop "$WORK/rabbitmq" "$AMQP_PORT" >/dev/null 2>&1 || true
    bash "$here/deploy/local/postgres.sh" stop "$WORK/postgres" "$PG_PORT" >/dev/null 2>&1 || true
}
trap cleanup EXIT
MANAGEMENT="http://127.0.0.1:$((AMQP_PORT + 10000))"

# start_gateway SIDE PORT: a fresh database and virtual host (with a queue that takes every
# message, as a scheduler's would, so the outbox empties), the gateway, bootstrap, 200 jobs; the
# scoped token's secret goes to $WORK/SIDE.token. Run in this shell, so that cleanup stops it.
start_gateway() {
    local side=$1 port=$2
    psql -q "postgres://drover:drover@127.0.0.1:$PG_PORT/drover" -c "DROP DATABASE IF EXISTS bench_$side" -c "CREATE DATABASE bench_$side" >/dev/null
    curl -fs -u guest:guest -X DELETE "$MANAGEMENT/api/vhosts/bench-$side" >/dev/null 2>&1 || true
    curl -fs -u guest:guest -X PUT "$MANAGEMENT/api/vhosts/bench-$side" >/dev/null
    curl -fs -u guest:guest -X PUT -H 'content-type: application/json' \
        --data '{"configure": ".*", "write": ".*", "read": ".*"}' "$MANAGEMENT/api/permissions/bench-$side/guest" >/dev/null
    DROVER_AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/bench-$side" \
        DROVER_POSTGRES_URL="postgres://drover:drover@127.0.0.1:$PG_PORT/bench_$side" \
        "$WORK/api-gateway-$side" --http-port "$port" >"$WORK/$side-gateway.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || die "the $side gateway is not ready; see $WORK/$side-gateway.log"
    curl -fs -u guest:guest -X PUT -H 'content-type: application/json' \
        --data '{"durable": false, "arguments": {"x-max-length": 1000, "x-overflow": "drop-head"}}' "$MANAGEMENT/api/queues/bench-$side/sink" >/dev/null
    curl -fs -u guest:guest -X POST -H 'content-type: application/json' --data '{"routing_key": "#"}' \
        "$MANAGEMENT/api/bindings/bench-$side/e/drover/q/sink" >/dev/null
    local management
    management=$(curl -fs -X POST "http://127.0.0.1:$port/v1/acl/bootstrap" | grep -o '"SecretID":"[^"]*"' | cut -d'"' -f4 || true)
    [ -n "$management" ] || die "the $side gateway did not bootstrap ACLs; see $WORK/$side-gateway.log"
    curl -fs -H "X-Nomad-Token: $management" -X POST "http://127.0.0.1:$port/v1/acl/policy/default-write" \
        --data '{"Name": "default-write", "Rules": "namespace \"default\" { policy = \"write\" }"}' >/dev/null
    for i in $(seq 1 200); do
        curl -fs -H "X-Nomad-Token: $management" -X POST "http://127.0.0.1:$port/v1/jobs" --data "$(job "listed-$i")" >/dev/null
    done
    curl -fs -H "X-Nomad-Token: $management" -X POST "http://127.0.0.1:$port/v1/acl/token" \
        --data '{"Name": "bench", "Type": "client", "Policies": ["default-write"]}' | grep -o '"SecretID":"[^"]*"' | cut -d'"' -f4 >"$WORK/$side.token"
}

job() {
    printf '{"Job": {"ID": "%s", "Type": "batch", "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}, "Resources": {"CPU": 100, "MemoryMB": 32}}]}]}}' "$1"
}

cat >"$WORK/post.lua" <<'LUA'
-- Each request registers a job of its own: bench-<thread>-<n>.
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("prefix", "bench-" .. threads .. "-" .. os.time())
end
local n = 0
function request()
    n = n + 1
    local body = '{"Job": {"ID": "' .. prefix .. '-' .. n .. '", "Type": "batch", "TaskGroups": [{"Name": "g", "Count": 1, '
        .. '"Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}, "Resources": {"CPU": 100, "MemoryMB": 32}}]}]}}'
    return wrk.format("POST", "/v1/jobs", {["Content-Type"] = "application/json", ["X-Nomad-Token"] = token}, body)
end
function init(args) token = args[1] end
LUA

say "== gateways"
start_gateway base 4700
start_gateway head 4701
BASE_TOKEN=$(cat "$WORK/base.token")
HEAD_TOKEN=$(cat "$WORK/head.token")
[ -n "$BASE_TOKEN" ] && [ -n "$HEAD_TOKEN" ] || die "a scoped token could not be made; see $WORK/*-gateway.log"

# round SIDE ROUTE: requests per second of one wrk run; non-2xx answers fail the run.
round() {
    local side=$1 route=$2 port token output
    if [ "$side" = base ]; then port=4700 token=$BASE_TOKEN; else port=4701 token=$HEAD_TOKEN; fi
    if [ "$route" = GET ]; then
        output=$(wrk -t2 -c16 -d"${SECONDS_PER_ROUND}s" -H "X-Nomad-Token: $token" "http://127.0.0.1:$port/v1/jobs")
    else
        output=$(wrk -t2 -c16 -d"${SECONDS_PER_ROUND}s" -s "$WORK/post.lua" "http://127.0.0.1:$port" -- "$token")
    fi
    if grep -q "Non-2xx" <<<"$output"; then
        echo "$output" >&2
        die "the $side gateway answered $route /v1/jobs with errors"
    fi
    awk '/Requests\/sec/ {print $2}' <<<"$output"
}

say "== rounds of ${SECONDS_PER_ROUND}s, $ROUNDS each side, per route"
results=""
for route in GET POST; do
    for i in $(seq 0 $((ROUNDS * 2 - 1))); do
        # base, head, head, base, base, head, …
        if [ $(((i + i / 2) % 2)) = 0 ]; then side=base; else side=head; fi
        rate=$(round "$side" "$route")
        echo "round $((i + 1)) $route /v1/jobs $side requests_per_s=$rate"
        results+="$route $side $rate"$'\n'
    done
done
python3 - "$BASE" "$SECONDS_PER_ROUND" "$ROUNDS" <<PY
import statistics, sys
base, seconds, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
rates = {}
for line in """$results""".split("\n"):
    if line.strip():
        route, side, rate = line.split()
        rates.setdefault((route, side), []).append(float(rate))
for route in ("GET", "POST"):
    b, h = statistics.median(rates[(route, "base")]), statistics.median(rates[(route, "head")])
    print(f"RESULT {route}_jobs base={base} head=$HEAD_COMMIT base_requests_per_s={b:.0f} head_requests_per_s={h:.0f} ratio={h / b:.3f} rounds={rounds} seconds={seconds}")
PY
