#!/usr/bin/env bash
# Firing precision through a whole running Drover: N scheduled jobs (R1, a no-op command) due at
# the same second, fired by the cluster's schedulers, placed, and started by its node agents.
# Prints the delay from the due time to each task's start (its TaskStates StartedAt), median and
# p99, once every run has started.
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

deadline = due + 300
delays = {}
while len(delays) < jobs and time.time() < deadline:
    time.sleep(2)
    listed = call("GET", f"/v1/jobs?prefix={run}-") or []
    for job in listed:  # every job under the prefix is a run (ParentID: its scheduled job)
        if job["ID"] not in delays:
            started = started_at(job["ID"])
            if started is not None:
                delays[job["ID"]] = started - due
values = sorted(delays.values())
def percentile(p):
    return values[min(len(values) - 1, int(round((len(values) - 1) * p)))] * 1000 if values else float("nan")
print(f"RESULT firing_to_start jobs={jobs} started={len(values)} p50_ms={percentile(0.5):.1f} p99_ms={percentile(0.99):.1f} max_ms={percentile(1.0):.1f}")
for i in range(jobs):
    try:
        call("DELETE", f"/v1/scheduler/job/{run}-{i}")
    except Exception:
        pass
PY
