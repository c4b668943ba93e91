#!/usr/bin/env bash
# Firing precision through a whole running Drover: N scheduled jobs (R1, a no-op command) due at
# the same second, fired by the cluster's schedulers, placed, and started by its node agents.
# Prints the delay from the due time to each task's start (its TaskStates StartedAt), median and
# p99, and to its batch job's registration (SubmitTime), once every run is over.
#
# Usage: Benchmarks/schedule-firing.sh [JOBS] [LEAD_SECONDS]
#   against DROVER_ADDR (default http://127.0.0.1:4646) with DROVER_TOKEN (default: the local
#   cluster's management token), e.g. after DROVER_BUILD=release deploy/local/up.
set -euo pipefail
JOBS=${1:-1000}
LEAD=${2:-30}
ADDR=${DROVER_ADDR:-http://127.0.0.1:4646}
here=$(cd "$(dirname "$0")/.." && pwd)
TOKEN=${DROVER_TOKEN:-$(cat "${DROVER_DATA_DIR:-$here/.drover}/management.token" 2>/dev/null || true)}
[ -n "$TOKEN" ] || { echo "schedule-firing: no DROVER_TOKEN and no management.token; start Drover with deploy/local/up" >&2; exit 1; }
RUN="firing$$"
DUE=$(( $(date +%s) + LEAD ))
START=$(date -u -d "@$DUE" +%Y-%m-%dT%H:%M:%SZ)

python3 - "$ADDR" "$TOKEN" "$RUN" "$JOBS" "$START" "$DUE" <<'PY'
import json, sys, time, urllib.request

addr, token, run, jobs, start, due = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])

def call(method, path, body=None):
    request = urllib.request.Request(addr + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"X-Nomad-Token": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        data = answer.read()
        return json.loads(data) if data else None

for i in range(jobs):
    call("POST", "/v1/scheduler/iso8601", {"name": f"{run}-{i}", "command": "true", "owner": "bench", "schedule": f"R1/{start}/PT1H",
                                           "cpus": 0.001, "mem": 10, "disk": 0, "retries": 0})
if time.time() >= due:
    sys.exit(f"schedule-firing: defining {jobs} jobs took past their due time; give a longer lead")

def started_at(job_id):
    allocations = call("GET", f"/v1/job/{job_id}/allocations") or []
    for allocation in allocations:
        state = (allocation.get("TaskStates") or {}).get("run") or {}
        if state.get("StartedAt"):
            from datetime import datetime
            return datetime.fromisoformat(state["StartedAt"].replace("Z", "+00:00")).timestamp()
    return None

# Waiting reads one list every 5 s (the runs' batch jobs, with their status), so that it hardly
# loads the cluster it measures; each run's allocations are read once every run is over.
deadline = due + 300
listed = []
while time.time() < deadline:
    time.sleep(5)
    listed = call("GET", f"/v1/jobs?prefix={run}-") or []  # every job under the prefix is a run
    if len(listed) >= jobs and all(job["Status"] == "dead" for job in listed):
        break
submitted, delays = [], []
for job in listed:
    submitted.append(job["SubmitTime"] / 1e9 - due)
    started = started_at(job["ID"])
    if started is not None:
        delays.append(started - due)
def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * p)))] * 1000 if values else float("nan")
print(f"RESULT firing_to_start jobs={jobs} started={len(delays)} p50_ms={percentile(delays, 0.5):.1f} p99_ms={percentile(delays, 0.99):.1f} "
      f"max_ms={percentile(delays, 1.0):.1f} registered_p50_ms={percentile(submitted, 0.5):.1f} registered_p99_ms={percentile(submitted, 0.99):.1f}")
for i in range(jobs):
    try:
        call("DELETE", f"/v1/scheduler/job/{run}-{i}")
    except Exception:
        pass
PY
