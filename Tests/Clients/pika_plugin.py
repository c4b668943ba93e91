"""Plugin users (`PUT /v1/bus/plugin/:name`, what `drover plugin create` calls) as the broker enforces them, with pika.

Usage: python pika_plugin.py HOST PORT MANAGEMENT_SECRET
A plugin bound to `event.job.#` receives a job's registration on its queue with its own URL, and
the broker refuses it everything else: binding to the internal exchange, binding with a key it was
not given, reading another plugin's queue, publishing. Exits 0 when every check holds; otherwise
prints the first that failed and exits 1.
"""

import sys
import time

import pika
import pika.exceptions

import drover_check
from drover_check import check

host, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = f"http://{host}:{port}"


def call(method, path, body=None, token=secret):
    return drover_check.call(base, method, path, body, token)


def refused(attempt):
    """Runs attempt(channel) on a fresh channel; returns the broker's reply code if it closed the channel."""
    channel = connection.channel()
    try:
        attempt(channel)
        channel.close()
        return None
    except pika.exceptions.ChannelClosedByBroker as closed:
        return closed.reply_code


status, notifier = call("PUT", "/v1/bus/plugin/notifier", {"Bindings": ["event.job.#"]})
check(status == 200 and notifier["Queue"] == "plugin.notifier" and notifier["User"] == "drover-plugin-notifier", f"a plugin is made ({status} {notifier})")
status, other = call("PUT", "/v1/bus/plugin/other", {"Bindings": ["event.node.#"]})
check(status == 200, "a second plugin is made")

connection = pika.BlockingConnection(pika.URLParameters(notifier["URL"]))
channel = connection.channel()
check(channel.queue_declare(queue="plugin.notifier", passive=True).method.message_count >= 0, "its queue exists when the call returns")

job = {"Job": {"ID": "plugin-job", "Type": "batch", "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [
    {"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}, "Resources": {"CPU": 100, "MemoryMB": 16}}]}]}}
status, _ = call("PUT", "/v1/jobs", job)
check(status == 200, "a job is registered")
received, deadline = [], time.time() + 30
while time.time() < deadline and not any(key.startswith("event.job.registered.plugin-job") for key in received):
    method, _, body = channel.basic_get("plugin.notifier", auto_ack=True)
    if method is None:
        time.sleep(0.2)
        continue
    received.append(method.routing_key)
check("event.job.registered.plugin-job" in received, f"the plugin reads the job's registration on its queue: {received}")
check(all(key.startswith("event.job.") for key in received), "and only what it is bound to")

code = refused(lambda c: c.queue_bind(queue="plugin.notifier", exchange="drover", routing_key="#"))
check(code == 403, f"binding to the internal exchange is refused ({code})")
code = refused(lambda c: c.queue_bind(queue="plugin.notifier", exchange="drover.events", routing_key="event.allocation.#"))
check(code == 403, f"binding with a key it was not given is refused ({code})")
code = refused(lambda c: c.basic_get("plugin.other", auto_ack=True))
check(code == 403, f"reading another plugin's queue is refused ({code})")
code = refused(lambda c: (c.confirm_delivery(), c.basic_publish(exchange="drover", routing_key="cluster.eval.x.pending", body=b"{}")))
check(code == 403, f"publishing is refused ({code})")

status, listed = call("GET", "/v1/bus/plugins")
check(status == 200 and [(p["Name"], p["Bindings"]) for p in listed] == [("notifier", ["event.job.#"]), ("other", ["event.node.#"])],
      f"plugins are listed with their bindings: {listed}")
check(all(":" not in p["URL"].split("@")[0].split("//")[1] for p in listed), "a listed URL holds no password")

status, answer = call("PUT", "/v1/bus/plugin/Bad_Name", {"Bindings": ["event.#"]})
check(status == 400 and answer["Fields"][0]["Field"] == "Name", f"a bad name is refused, naming the field ({status})")
status, answer = call("PUT", "/v1/bus/plugin/x", {"Bindings": ["cluster.#"]})
check(status == 400 and answer["Fields"][0]["Field"] == "Bindings[0]", f"a binding outside the events is refused ({status})")
status, _ = call("PUT", "/v1/bus/plugin/x", {"Bindings": ["event.#"]}, token=None)
check(status == 401, f"making a plugin needs a token ({status})")

connection.close()
status, _ = call("DELETE", "/v1/bus/plugin/notifier")
check(status == 204, f"a plugin is deleted ({status})")
try:
    pika.BlockingConnection(pika.URLParameters(notifier["URL"])).close()
    check(False, "its user is gone")
except pika.exceptions.AMQPConnectionError:
    check(True, "its user is gone")
status, _ = call("DELETE", "/v1/bus/plugin/notifier")
check(status == 404, f"deleting it again: not found ({status})")
call("DELETE", "/v1/bus/plugin/other")
print("all checks passed")
