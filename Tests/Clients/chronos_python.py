"""chronos-python against a Drover gateway with ACLs on: the token is the basic-auth password.

Usage: python chronos_python.py HOST:PORT MANAGEMENT_SECRET
Exits 0 when every check holds; otherwise prints the first that failed and exits 1.
"""

import sys
import time

import chronos

server, secret = sys.argv[1], sys.argv[2]


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def eventually(what, condition, within=60):
    deadline = time.time() + within
    while time.time() < deadline:
        if condition():
            print(f"ok: {what}")
            return
        time.sleep(0.5)
    print(f"FAILED: {what} within {within} s")
    sys.exit(1)


client = chronos.connect(server, username="drover", password=secret)
legacy = chronos.connect(server, username="drover", password=secret, scheduler_api_version=None)


def job(name):
    return next((j for j in client.list() if j["name"] == name), None)


# Without credentials the gateway refuses (chronos-python then has no server left to try).
try:
    chronos.connect(server).list()
    check(False, "a client without a token is refused")
except chronos.ChronosAPIError:
    check(True, "a client without a token is refused")

parent = {"name": "py-parent", "command": "echo from chronos-python", "owner": "ops@example.com", "disabled": False,
          "schedule": "R3//PT2S", "epsilon": "PT30S"}
client.add(parent)
check(job("py-parent") is not None and job("py-parent")["owner"] == "ops@example.com", "an ISO 8601 job is added and listed")
check([j["name"] for j in client.search(name="py-par")] == ["py-parent"], "search by name finds it")
check(any(j["name"] == "py-parent" for j in legacy.list()), "the /scheduler prefix of Chronos 2.x lists it too")

# R3 runs three times, each a batch job that succeeds on the node, then disables itself.
eventually("three runs succeeded and the job disabled itself",
           lambda: (job("py-parent") or {}).get("successCount", 0) >= 3 and job("py-parent")["disabled"])

child = {"name": "py-child", "command": "echo child", "owner": "ops@example.com", "disabled": False, "parents": ["py-parent"]}
client.add(child)
check("link,py-parent,py-child" in client.scheduler_graph(), "the graph links the child to its parent")

# A run by hand; its success releases the child.
client.run("py-parent")
eventually("the run by hand succeeded", lambda: job("py-parent")["successCount"] >= 4)
eventually("the child ran once its parent succeeded", lambda: (job("py-child") or {}).get("successCount", 0) >= 1)
stats = client.job_stat("py-parent")
check(stats["histogram"]["count"] >= 4 and stats["histogram"]["median"] > 0, "job_stat has the run durations")

# Updating keeps the counts; a bad schedule is refused with the field.
parent["description"] = "updated"
client.update(parent)
check(job("py-parent")["description"] == "updated" and job("py-parent")["successCount"] >= 4, "an update keeps the counts")
try:
    client.add({"name": "py-bad", "command": "true", "owner": "o", "disabled": False, "schedule": "R/yesterday/PT1S"})
    check(False, "a bad schedule is refused")
except chronos.ChronosAPIError:
    # chronos-python logs the answer (400, naming the field) and says only that no server is left.
    check(job("py-bad") is None, "a bad schedule is refused")

try:
    client.delete("py-parent")
    check(False, "a parent with a child is not deleted")
except chronos.ChronosAPIError:
    check(True, "a parent with a child is not deleted")
client.delete("py-child")
client.delete("py-parent")
check(client.list() == [], "both deleted")
print("all checks passed")
