"""A notification plugin: follows failed allocations on Drover's events exchange and says, for
each, whose job it was and how its task's output ended.

It reads its own queue (made by `drover plugin create notifier --bind 'event.allocation.failed.*'`)
with the AMQP URL that command printed, and reads the job and the task's output over the HTTP API
with a token that may read jobs and logs. A job's owner is its `Meta.owner` (`drover.schedule.parent`
names the scheduled job of a time-based run, whose `owner` is used when the run's job has none).

    python notifier.py --amqp-url URL --queue plugin.notifier --address http://127.0.0.1:4646 --token SECRET [--lines 10] [--once]

Each failure is printed as one JSON object per line:
    {"alloc": ..., "job": ..., "owner": ..., "status": "failed", "tail": {"<task>": "<last lines>"}}
A real notifier would send it by mail or chat instead; that is the only part to change.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import pika


def get(address, token, path, raw=False):
    request = urllib.request.Request(address + path, headers={"X-Nomad-Token": token} if token else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        data = answer.read()
        return data if raw else json.loads(data or b"null")


def owner_of(address, token, job):
    meta = job.get("Meta") or {}
    if meta.get("owner"):
        return meta["owner"]
    parent = meta.get("drover.schedule.parent")
    if parent:
        try:
            return get(address, token, f"/v1/scheduler/job/{urllib.parse.quote(parent)}").get("owner") or None
        except urllib.error.HTTPError:
            return None
    return None


def tail(address, token, alloc_id, task, lines):
    text = b""
    for stream in ("stdout", "stderr"):
        query = urllib.parse.urlencode({"task": task, "type": stream, "plain": "true", "origin": "end", "offset": 65536})
        try:
            text += get(address, token, f"/v1/client/fs/logs/{alloc_id}?{query}", raw=True)
        except urllib.error.HTTPError:
            pass
    return "\n".join(text.decode(errors="replace").splitlines()[-lines:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", required=True, help="The plugin's URL, as `drover plugin create` printed it.")
    parser.add_argument("--queue", required=True, help="The plugin's queue, plugin.<name>.")
    parser.add_argument("--address", default="http://127.0.0.1:4646", help="Drover's HTTP API.")
    parser.add_argument("--token", default="", help="A token that may read jobs and their logs.")
    parser.add_argument("--lines", type=int, default=10, help="How many last lines of output to show.")
    parser.add_argument("--once", action="store_true", help="Stop after the first failure (for tests).")
    options = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(options.amqp_url))
    channel = connection.channel()
    print(f"notifier: reading {options.queue}", file=sys.stderr, flush=True)
    for method, _, body in channel.consume(options.queue):
        envelope = json.loads(body)
        event = envelope["data"]
        allocation = (event.get("Payload") or {}).get("Allocation") or {}
        # Bound to failed allocations only; whatever else arrives is acknowledged and passed over.
        if event.get("Topic") == "Allocation" and allocation.get("ClientStatus") == "failed":
            job = get(options.address, options.token, f"/v1/job/{urllib.parse.quote(allocation['JobID'])}")
            tasks = sorted((allocation.get("TaskStates") or {}).keys())
            report = {
                "alloc": allocation["ID"], "job": allocation["JobID"], "owner": owner_of(options.address, options.token, job),
                "status": "failed", "description": allocation.get("ClientDescription"),
                "tail": {task: tail(options.address, options.token, allocation["ID"], task, options.lines) for task in tasks},
            }
            print(json.dumps(report), flush=True)
            channel.basic_ack(method.delivery_tag)
            if options.once:
                break
        else:
            channel.basic_ack(method.delivery_tag)
    connection.close()


if __name__ == "__main__":
    main()
