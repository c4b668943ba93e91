"""The example notifier plugin (examples/plugins/python-notifier) against a running cluster.

Usage: python notifier_example.py HOST PORT MANAGEMENT_SECRET
Makes the plugin's broker user bound to failed allocations, starts the notifier with the URL and
queue it was given, runs a job that fails with some output, and checks what the notifier printed:
the job, its owner, and the last lines of its output. Exits 0 when every check holds.
"""

import json
import os
import subprocess
import sys

import drover_check
from drover_check import check

host, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://{host}:{port}"


def call(method, path, body=None):
    return drover_check.call(base, method, path, body, secret)


notifier = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "plugins", "python-notifier", "notifier.py")


status, plugin = call("PUT", "/v1/bus/plugin/notifier", {"Bindings": ["event.allocation.failed.*"]})
check(status == 200, f"the notifier's broker user and queue are made ({status})")
process = subprocess.Popen([sys.executable, notifier, "--amqp-url", plugin["URL"], "--queue", plugin["Queue"], "--address", base,
                            "--token", secret, "--lines", "2", "--once"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
job = {"Job": {"ID": "fails-loudly", "Type": "batch", "Meta": {"owner": "alice@example.com"}, "TaskGroups": [{
    "Name": "g", "Count": 1, "RestartPolicy": {"Attempts": 0, "Mode": "fail"}, "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
    "Tasks": [{"Name": "t", "Driver": "raw_exec", "Resources": {"CPU": 100, "MemoryMB": 16},
               "Config": {"command": "/bin/sh", "args": ["-c", "echo one; echo two; echo boom; sleep 1; exit 3"]}}]}]}}
status, _ = call("PUT", "/v1/jobs", job)
check(status == 200, "a job that fails is registered")
try:
    out, err = process.communicate(timeout=90)
except subprocess.TimeoutExpired:
    process.kill()
    out, err = process.communicate()
    check(False, f"the notifier reported within 90 s (stderr: {err[-2000:]})")
check(process.returncode == 0, f"the notifier ran ({process.returncode}; stderr: {err[-2000:]})")
report = json.loads(out.strip().splitlines()[-1])
check(report["job"] == "fails-loudly" and report["status"] == "failed", f"it names the failed job: {report}")
check(report["owner"] == "alice@example.com", "and its owner")
check(report["tail"].get("t", "").splitlines()[-2:] == ["two", "boom"], f"and the last lines of its output: {report['tail']}")
call("DELETE", "/v1/bus/plugin/notifier")
print("all checks passed")
