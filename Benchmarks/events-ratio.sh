#!/usr/bin/env bash
# What the event stream costs, in one run: job-bench rounds on a running Drover with events on and
# off in turn (on, off, off, on, …; `drover_settings`, at once for every service), while a
# plugin's queue bound to `event.#` on `drover.events` takes every event published. Prints each round, then completed
# jobs per second with events on and off (the median of the rounds), their ratio, and the events
# per second the plugin received during the rounds with events on.
#
# Usage: Benchmarks/events-ratio.sh [JOBS_PER_ROUND] [ROUNDS_EACH]
#   against DROVER_ADDR (default http://127.0.0.1:4646) with DROVER_TOKEN (default: the local
#   cluster's management token), DROVER_POSTGRES_URL and DROVER_AMQP_URL (default: those of
#   deploy/local/up), e.g. after DROVER_BUILD=release deploy/local/up --agents 2.
set -euo pipefail
JOBS=${1:-300}
ROUNDS=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
export DROVER_ADDR=${DROVER_ADDR:-http://127.0.0.1:4646}
export DROVER_TOKEN=${DROVER_TOKEN:-$(cat "${DROVER_DATA_DIR:-$here/.drover}/management.token" 2>/dev/null || true)}
[ -n "$DROVER_TOKEN" ] || { echo "events-ratio: no DROVER_TOKEN and no management.token; start Drover with deploy/local/up" >&2; exit 1; }
POSTGRES=${DROVER_POSTGRES_URL:-postgres://drover:drover@127.0.0.1:5440/drover}
AMQP=${DROVER_AMQP_URL:-amqp://guest:guest@127.0.0.1:5680}
PYTHON=${DROVER_TEST_PYTHON:-${DROVER_CACHE_DIR:-$HOME/.cache/drover}/python-clients-3/bin/python}
"$PYTHON" -c 'import pika' 2>/dev/null || { echo "events-ratio: $PYTHON has no pika; run deploy/local/test once, or set DROVER_TEST_PYTHON" >&2; exit 1; }
swift build -c release --product job-bench --scratch-path "$here/.build-release" >/dev/null
BENCH="$here/.build-release/release/job-bench"

"$PYTHON" - "$BENCH" "$JOBS" "$ROUNDS" "$POSTGRES" "$AMQP" <<'PY'
import re, statistics, subprocess, sys, time
import pika

bench, jobs, rounds, postgres, amqp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

def events(state):
    subprocess.run(["psql", "-q", postgres, "-c", f"UPDATE drover_settings SET value = '{state}' WHERE name = 'events'"], check=True)

connection = pika.BlockingConnection(pika.URLParameters(amqp))
channel = connection.channel()
queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
channel.queue_bind(queue=queue, exchange="drover.events", routing_key="#")

def queued():
    return channel.queue_declare(queue=queue, passive=True).method.message_count

rates = {"on": [], "off": []}
delivered = []
try:
    for round in range(rounds * 2):
        # on, off, off, on, on, off, ...: a drift over the run (the database grows) weighs on both alike.
        state = "on" if (round % 2 == 0) == (round // 2 % 2 == 0) else "off"
        events(state)
        channel.queue_purge(queue)
        started = time.time()
        output = subprocess.run([bench, "--jobs", jobs], check=True, capture_output=True, text=True).stdout
        elapsed = time.time() - started
        rate = float(re.search(r"RESULT drover_jobs_per_s=([0-9.]+)", output).group(1))
        rates[state].append(rate)
        line = f"round {round + 1} events={state} jobs_per_s={rate:.2f}"
        if state == "on":
            # The relay publishes what the round committed within moments; wait until the count stands.
            count, last = queued(), -1
            while count != last:
                time.sleep(1)
                count, last = queued(), count
            delivered.append(count / elapsed)
            line += f" events_delivered={count} events_per_s={count / elapsed:.0f}"
        print(line, flush=True)
finally:
    events("on")
    connection.close()

on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
print(f"RESULT events_on_jobs_per_s={on:.2f} events_off_jobs_per_s={off:.2f} ratio={on / off:.3f} "
      f"events_per_s={statistics.median(delivered):.0f} rounds={rounds} jobs_per_round={jobs}")
PY
