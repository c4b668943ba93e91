#!/usr/bin/env python3
"""An example Drover provider plugin, in Python with pika.

It speaks the provider contract of docs/asyncapi.yaml and nothing else:

- it reads `cluster.provider.<array>.create` and `cluster.provider.<array>.terminate` from the
  `drover` topic exchange, on queues of its own, and acts on the requests whose `Provider` is
  its name;
- for each machine to create it runs START_COMMAND (a shell command; `{name}`, `{node_id}`,
  `{array}`, `{cores}`, `{cpu}`, `{memory_mb}` and `{gateway}` are filled in, and the machine's
  one-time enrollment token is in the environment as DROVER_ENROLL_TOKEN, never on the command
  line) and answers `provider.<array>.created`, or `.failed` with the reason;
- for each machine to terminate it stops what it started (SIGTERM, then SIGKILL after 30 s)
  and answers `provider.<array>.terminated`.

A cloud provider would call its API where this one starts a process. Usage:

    provider.py --amqp-url amqp://USER:PASSWORD@HOST:5672/VHOST --name python-example \
        --start-command 'node-agent --data-dir /var/lib/drover/{name} --node-id {node_id} --node-name {name} \
            --meta nodearray={array} --cpu-total-compute {cpu} --memory-mb {memory_mb} --http-port 0'
"""

import argparse
import datetime
import json
import logging
import os
import shlex
import signal
import subprocess
import time
import uuid

import pika

EXCHANGE = "drover"
log = logging.getLogger("provider")


def envelope(message_type, data):
    """A Drover message envelope: what every message's body is."""
    return {
        "id": str(uuid.uuid4()),
        "type": message_type,
        "version": 1,
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "data": data,
    }


class Provider:
    def __init__(self, channel, name, start_command, gateway=None):
        self.channel = channel
        self.name = name
        self.start_command = start_command
        self.gateway = gateway  # where this host reaches the gateway, if not where the request says
        self.machines = {}  # machine name -> subprocess.Popen

    def reply(self, request, status, machines, reason=None):
        data = {"RequestID": request["RequestID"], "NodeArray": request["NodeArray"], "Status": status, "Machines": machines}
        if reason:
            data["Reason"] = reason
        body = envelope("provider.reply", data)
        self.channel.basic_publish(
            exchange=EXCHANGE,
            routing_key=f"provider.{request['NodeArray']}.{status}",
            body=json.dumps(body).encode(),
            properties=pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=body["id"], type=body["type"]
            ),
        )
        log.info("answered %s for %s: %s", status, request["NodeArray"], machines)

    def create(self, request):
        started, failed = [], {}
        kind = request["MachineType"]
        gateway = self.gateway or request["Gateway"]
        for machine in request["Machines"]:
            name = machine["Name"]
            process = self.machines.get(name)
            if process is not None and process.poll() is None:
                started.append(name)  # a redelivered request: it runs already
                continue
            cores = kind["Cores"]
            command = self.start_command.format(
                name=shlex.quote(name),
                node_id=shlex.quote(machine["NodeID"]),
                array=shlex.quote(request["NodeArray"]),
                cores=cores,
                cpu=cores * kind.get("CPUPerCore", 1000),
                memory_mb=kind["MemoryMB"],
                gateway=shlex.quote(gateway),
            )
            environment = dict(os.environ, DROVER_ENROLL_TOKEN=machine["EnrollToken"], DROVER_ADDR=gateway)
            try:
                self.machines[name] = subprocess.Popen(
                    command, shell=True, env=environment, start_new_session=True,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                started.append(name)
            except OSError as error:
                failed[name] = f"cannot start: {error}"
        if started:
            self.reply(request, "created", started)
        for name, reason in failed.items():
            self.reply(request, "failed", [name], reason)

    def terminate(self, request):
        gone = []
        for machine in request["Machines"]:
            name = machine["Name"]
            process = self.machines.pop(name, None)
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            gone.append(name)
        self.reply(request, "terminated", gone)

    def stop_all(self):
        for process in self.machines.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

    def on_message(self, channel, method, properties, body):
        try:
            message = json.loads(body)
            request = message["data"]
        except (ValueError, KeyError, TypeError) as error:
            log.warning("dropping a message that is not an envelope: %s", error)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        if request.get("Provider") != self.name:
            channel.basic_ack(method.delivery_tag)  # another provider's
            return
        if message.get("type") == "cluster.provider.create":
            self.create(request)
        elif message.get("type") == "cluster.provider.terminate":
            self.terminate(request)
        channel.basic_ack(method.delivery_tag)


def main():
    parser = argparse.ArgumentParser(description="An example Drover provider plugin.")
    parser.add_argument("--amqp-url", default=os.environ.get("DROVER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5680/%2F"))
    parser.add_argument("--name", default="python-example", help="the provider name it answers for")
    parser.add_argument("--start-command", required=True, help="the shell command that makes one machine")
    parser.add_argument("--gateway", help="the gateway's address as this host reaches it, instead of the request's")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    connection = None
    for _ in range(60):
        try:
            connection = pika.BlockingConnection(pika.URLParameters(arguments.amqp_url))
            break
        except pika.exceptions.AMQPConnectionError:
            time.sleep(1)
    if connection is None:
        raise SystemExit(f"cannot reach RabbitMQ at {arguments.amqp_url}")
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True, passive=True)
    provider = Provider(channel, arguments.name, arguments.start_command, arguments.gateway)
    for request in ("create", "terminate"):
        queue = f"provider.{arguments.name}.{request}"
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, EXCHANGE, routing_key=f"cluster.provider.*.{request}")
        channel.basic_consume(queue, provider.on_message)

    def shut_down(*_):
        # pika's loop swallows exceptions raised in a signal handler: leave at once instead.
        provider.stop_all()
        logging.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, shut_down)
    log.info("provider %s ready", arguments.name)
    try:
        channel.start_consuming()
    finally:
        provider.stop_all()


if __name__ == "__main__":
    main()
