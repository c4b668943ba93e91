"""python-nomad against a Drover gateway with ACLs on.

Usage: python python_nomad.py HOST PORT MANAGEMENT_SECRET
Exits 0 when every check holds; otherwise prints the first that failed and exits 1.
"""

import sys
import time

import nomad
from nomad.api.exceptions import BaseNomadException, URLNotAuthorizedNomadException

host, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def client(token=None):
    return nomad.Nomad(host=host, port=port, token=token, timeout=10)


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def status_of(call):
    try:
        call()
        return 200
    except BaseNomadException as error:
        return getattr(error.nomad_resp, "status_code", None)


admin = client(secret)
check(admin.acl.get_self_token()["Type"] == "management", "the management token reads itself")

job = {
    "Job": {
        "ID": "python-nomad",
        "Type": "batch",
        "TaskGroups": [
            {
                "Name": "g",
                "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                "Tasks": [
                    {
                        "Name": "t",
                        "Driver": "raw_exec",
                        "Config": {"command": "/bin/echo", "args": ["from python-nomad"]},
                        "Resources": {"CPU": 100, "MemoryMB": 32},
                    }
                ],
            }
        ],
    }
}
registered = admin.job.register_job("python-nomad", job)
check("EvalID" in registered, "register_job returns an evaluation")
deadline = time.monotonic() + 60
allocations = []
while time.monotonic() < deadline:
    allocations = admin.job.get_allocations("python-nomad")
    if allocations and allocations[0]["ClientStatus"] == "complete":
        break
    time.sleep(0.2)
check(allocations and allocations[0]["ClientStatus"] == "complete", "the job's allocation completes")
check("python-nomad" in [j["ID"] for j in admin.jobs.get_jobs()], "jobs.get_jobs lists it")

# No token: refused with 401; a token nobody issued: refused.
check(status_of(lambda: client().jobs.get_jobs()) == 401, "no token is refused with 401")
check(status_of(lambda: client("00000000-0000-0000-0000-000000000000").jobs.get_jobs()) in (401, 403), "an unknown token is refused")

# A client token with a read-only policy reads, and may not submit.
admin.acl.create_policy("py-reader", {"Name": "py-reader", "Rules": 'namespace "default" { policy = "read" }'})
token = admin.acl.create_token({"Name": "py", "Type": "client", "Policies": ["py-reader"]})
reader = client(token["SecretID"])
check(reader.job.get_job("python-nomad")["ID"] == "python-nomad", "a read-only token reads the job")
try:
    reader.job.register_job("python-nomad", job)
    check(False, "a read-only token may not register a job")
except URLNotAuthorizedNomadException:
    check(True, "a read-only token may not register a job (403)")

admin.acl.delete_token(token["AccessorID"])
check(status_of(lambda: reader.jobs.get_jobs()) in (401, 403), "a deleted token is refused")
admin.job.deregister_job("python-nomad")

# A periodic job: never placed itself; forced, a child runs and names its parent.
periodic = {"Job": dict(job["Job"], ID="py-periodic", Periodic={"Spec": "0 3 * * *", "TimeZone": "Europe/Berlin", "ProhibitOverlap": True})}
check(admin.job.register_job("py-periodic", periodic)["EvalID"] == "", "a periodic job is registered without an evaluation")
forced = admin.job.periodic_job("py-periodic")
check(forced["EvalID"] != "", "periodic_job forces a child")
deadline = time.monotonic() + 60
children = []
while time.monotonic() < deadline:
    children = [j for j in admin.jobs.get_jobs() if j.get("ParentID") == "py-periodic"]
    if children and children[0]["Status"] == "dead":
        break
    time.sleep(0.2)
check(children and children[0]["ID"].startswith("py-periodic-periodic-"), "the child is listed with its ParentID")
check(admin.job.get_allocations(children[0]["ID"])[0]["ClientStatus"] == "complete", "the child ran")
check(admin.job.get_allocations("py-periodic") == [], "the periodic job itself is never placed")
admin.job.deregister_job("py-periodic")
print("python-nomad: all checks passed")
