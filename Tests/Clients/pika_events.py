"""A plugin's view of the cluster: pika on the public events exchange, and the HTTP event stream.

Usage: python pika_events.py HOST PORT MANAGEMENT_SECRET AMQP_URL
Runs a batch job and checks that a queue bound to `event.allocation.#` on `drover.events` sees
its allocation's whole life in order, the last event's allocation being what the HTTP API reports,
that every event published meanwhile, of every topic (a drain, a node array and a time-based job
make the rest), matches the AsyncAPI document's schema (`StreamEvent`), and
that /v1/event/stream gives the same events. Exits 0 when every check holds; otherwise prints
the first that failed and exits 1.
"""

import json
import os
import sys
import time
import urllib.request

import jsonschema
import pika
import yaml

import drover_check
from drover_check import check

host, port, secret, amqp_url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
base = f"http://{host}:{port}"


def call(method, path, body=None, token=secret):
    return drover_check.call(base, method, path, body, token)


# The message schema, as the AsyncAPI document writes it: its references resolve in the document.
document = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "asyncapi.yaml")))
schema = jsonschema.Draft202012Validator({**document, "$ref": "#/components/messages/StreamEvent/payload"})

connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
channel = connection.channel()
queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
channel.queue_bind(queue=queue, exchange="drover.events", routing_key="event.allocation.#")
channel.queue_bind(queue=queue, exchange="drover.events", routing_key="event.job.registered.pika-events")
# Everything else, to check each type against the schema.
everything = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
channel.queue_bind(queue=everything, exchange="drover.events", routing_key="#")

job = {
    "Job": {
        "ID": "pika-events",
        "Type": "batch",
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/sh", "args": ["-c", "sleep 1; echo hello"]},
                                                             "Resources": {"CPU": 100, "MemoryMB": 32}}]}],
    }
}
status, answer = call("PUT", "/v1/jobs", job)
check(status == 200, f"the job is registered ({status} {answer})")

# The allocation's events, in the order the queue holds them, until it is complete.
events, registered, deadline = [], [], time.time() + 90
for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
    if time.time() > deadline:
        break
    if method is None:
        continue
    envelope = json.loads(body)
    channel.basic_ack(method.delivery_tag)
    event = envelope["data"]
    check(envelope["type"] == "event" and envelope["version"] == 1 and envelope["id"] == properties.message_id
          and envelope["id"].startswith("event-"), f"an envelope with type, version and id: {method.routing_key}")
    if event["Topic"] == "Job":
        registered.append(event)
        continue
    if "pika-events" not in event["FilterKeys"]:
        continue
    allocation = event["Payload"]["Allocation"]
    check(method.routing_key == f"event.allocation.{'placed' if event['Type'] == 'AllocationCreated' else allocation['ClientStatus']}.{event['Key']}",
          f"routing key {method.routing_key} names the change")
    events.append(event)
    if allocation["ClientStatus"] in ("complete", "failed"):
        break
channel.cancel()

check(len(registered) == 1 and registered[0]["Payload"]["Job"]["ID"] == "pika-events", "the job's registration arrives under event.job.registered.<id>")
check(len(events) >= 2, f"the allocation's events arrived ({len(events)})")
statuses = [event["Payload"]["Allocation"]["ClientStatus"] for event in events]
order = {"pending": 0, "running": 1, "complete": 2}
check(events[0]["Type"] == "AllocationCreated" and statuses[0] == "pending", "its life starts with its placement, pending")
check(statuses[-1] == "complete" and "running" in statuses, f"runs, and ends complete: {statuses}")
check(all(order[a] <= order[b] for a, b in zip(statuses, statuses[1:])), f"in order: {statuses}")
check([event["Index"] for event in events] == sorted(event["Index"] for event in events), "indexes never go back")
alloc_id = events[0]["Key"]
status, read = call("GET", f"/v1/allocation/{alloc_id}")
read.pop("Job", None)
check(events[-1]["Payload"]["Allocation"] == read, "the last event's allocation is what GET /v1/allocation/:id reports (without its job)")

# The same events over HTTP, from the first one's index: Nomad's framing, one frame per index.
stream = urllib.request.Request(f"{base}/v1/event/stream?topic=Allocation:pika-events&index={events[0]['Index']}",
                                headers={"X-Nomad-Token": secret})
streamed = []
with urllib.request.urlopen(stream, timeout=30) as answer:
    while len(streamed) < len(events):
        line = answer.readline()
        check(line.endswith(b"\n"), "the stream sends whole lines")
        frame = json.loads(line)
        if frame == {}:
            continue  # a heartbeat
        check(all(event["Index"] == frame["Index"] for event in frame["Events"]), "a frame holds the events of its index")
        streamed += frame["Events"]
check([(e["Type"], e["Index"], e["Payload"]["Allocation"]["ClientStatus"]) for e in streamed]
      == [(e["Type"], e["Index"], e["Payload"]["Allocation"]["ClientStatus"]) for e in events], "the HTTP stream gives the same events in the same order")

# Changes of every other topic: a drain of the node and its end (Node, NodeDrain), a node array
# made and deleted (NodeArray), a time-based job defined, run and deleted (Schedule).
status, nodes = call("GET", "/v1/nodes")
check(status == 200 and nodes, f"the node is listed ({status})")
node_id = nodes[0]["ID"]
status, answer = call("POST", f"/v1/node/{node_id}/drain", {"DrainSpec": {"Deadline": 0}})
check(status == 200, f"the node drains ({status} {answer})")
status, answer = call("POST", f"/v1/node/{node_id}/drain", {"DrainSpec": None, "MarkEligible": True})
check(status == 200, f"the drain is cancelled and the node eligible again ({status} {answer})")
array = {"Name": "pika-array", "Provider": "nobody", "MinCount": 0, "MaxCount": 1, "MachineType": {"Cores": 1, "MemoryMB": 512}}
status, answer = call("PUT", "/v1/nodearray/pika-array", array)
check(status == 200, f"a node array is made ({status} {answer})")
status, answer = call("DELETE", "/v1/nodearray/pika-array")
check(status == 200, f"and deleted ({status} {answer})")
status, answer = call("POST", "/v1/scheduler/iso8601", {"name": "pika-schedule", "command": "true", "schedule": "R1//PT1H", "owner": "ops@example.com"})
check(status in (200, 204), f"a time-based job is defined ({status} {answer})")

# Every event published meanwhile, whatever its topic, matches the schema; every topic appears.
wanted = {"Job", "Evaluation", "Allocation", "Node", "NodeDrain", "NodeArray", "Schedule"}
topics, types, deadline = set(), set(), time.time() + 60
while not wanted <= topics and time.time() < deadline:
    method, properties, body = channel.basic_get(everything, auto_ack=True)
    if method is None:
        time.sleep(0.2)
        continue
    envelope = json.loads(body)
    problems = [f"{error.json_path}: {error.message}" for error in schema.iter_errors(envelope)]
    check(not problems, f"{method.routing_key} matches the schema {problems[:3]}")
    topics.add(envelope["data"]["Topic"])
    types.add((envelope["data"]["Topic"], envelope["data"]["Type"]))
check(wanted <= topics, f"every topic was published: {sorted(topics)}")
print(f"{len(types)} event types checked against the schema: {sorted(types)}")
call("DELETE", "/v1/scheduler/job/pika-schedule")

status, _ = call("GET", "/v1/event/stream?topic=Allocation", token=None)
check(status == 401, f"the stream needs a token ({status})")
status, answer = call("GET", "/v1/event/stream?topic=Bogus")
check(status == 400 and answer["Fields"][0]["Field"] == "topic", f"an unknown topic is refused, naming the field ({status} {answer})")

connection.close()
print("all checks passed")
