"""Every numeric and string field of every route in the OpenAPI document, sent hostile values one at
a time: Int64.max, Int64.min, 2^64, -1, 1e308, NaN, an empty string, and (once per body) a 10 MB
string. Each answer must be a 2xx or a 4xx with a JSON error (never a 5xx, never a dropped
connection), and the gateway must still answer afterwards.

    hostile_values.py HOST PORT TOKEN
"""

import http.client
import json
import sys
import time

import yaml

from drover_check import check

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]

INT64_MAX = "9223372036854775807"
HOSTILE_NUMBERS = [INT64_MAX, "-9223372036854775808", "18446744073709551616", "-1", "1e308", "NaN"]
HOSTILE_STRINGS = ["", "-1", "NaN"]
TEN_MB = "x" * (10 << 20)
# Routes whose success changes what the rest of the run sees (the bootstrap works once; a
# garbage collection or a delete of nothing changes nothing).
SKIPPED = {("/v1/acl/bootstrap", "post")}


def request(method, path, body=None, raw=None):
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"X-Nomad-Token": token, "Content-Type": "application/json"}
    data = raw if raw is not None else (None if body is None else json.dumps(body, allow_nan=True))
    try:
        connection.request(method.upper(), path, body=data, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except OSError as error:
        # The gateway dropped the connection, or is gone: the worst answer there is.
        print(f"FAILED: {method.upper()} {path} {(data or '')[:200]}: {error!r}")
        sys.exit(1)
    finally:
        connection.close()


def resolve(schema, depth=0):
    """The schema with `$ref`s and `allOf`s followed, as far as a field's type goes."""
    if depth > 8 or not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return resolve(spec["components"]["schemas"][name], depth + 1)
    if "allOf" in schema:
        merged = {"type": "object", "properties": {}}
        for part in schema["allOf"]:
            merged["properties"].update(resolve(part, depth + 1).get("properties", {}))
        return merged
    return schema


def kind(schema):
    schema = resolve(schema)
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "integer" in types or "number" in types:
        return "number"
    if "string" in types or "enum" in schema or "const" in schema:
        return "string"
    if "object" in types or "properties" in schema:
        return "object"
    if "array" in types:
        return "array"
    return None


def fields(schema, prefix=(), depth=0):
    """(path, kind) of every number and string field of an object schema, nested objects too."""
    schema = resolve(schema)
    found = []
    if depth > 4:
        return found
    for name, field in (schema.get("properties") or {}).items():
        field_kind = kind(field)
        if field_kind in ("number", "string"):
            found.append((prefix + (name,), field_kind))
        elif field_kind == "object":
            found += fields(field, prefix + (name,), depth + 1)
    return found


def body_with(path, value):
    """A JSON text whose field at `path` holds `value`, written as it stands (numbers unquoted)."""
    text = value
    for name in reversed(path):
        text = "{" + json.dumps(name) + ": " + text + "}"
    return text


spec = yaml.safe_load(request("get", "/v1/openapi.yaml")[1])

# Objects that exist, so that a route gets past "not found" to its fields: the agent's node, a
# job with an allocation and its evaluation.
nodes = json.loads(request("get", "/v1/nodes")[1])
check(len(nodes) == 1, "the agent's node is there")
job = {"Job": {"ID": "hostile", "Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
    "Config": {"command": "/bin/sleep", "args": ["30"]}, "Resources": {"CPU": 100, "MemoryMB": 32}}]}]}}
status, answer = request("post", "/v1/jobs", body=job)
check(status == 200, f"the job registers: {answer[:200]!r}")
evaluation = json.loads(answer)["EvalID"]
for _ in range(300):
    allocations = json.loads(request("get", "/v1/job/hostile/allocations")[1])
    if allocations:
        break
    time.sleep(0.1)
check(bool(allocations), "the job has an allocation")
ids = {"/v1/node/": nodes[0]["ID"], "/v1/job/": "hostile", "/v1/allocation/": allocations[0]["ID"], "/v1/evaluation/": evaluation,
    "/v1/client/fs/logs/": allocations[0]["ID"], "/v1/namespace/": "default"}

sent = 0
problems = []
for route, item in spec["paths"].items():
    if not route.startswith("/v1/"):
        continue
    known = next((value for prefix, value in ids.items() if route.startswith(prefix)), "hostile-1")
    concrete = route
    for parameter in ("id", "alloc", "name", "accessor"):
        concrete = concrete.replace("{" + parameter + "}", known)
    for method, operation in item.items():
        if method not in ("get", "post", "put", "delete") or (route, method) in SKIPPED or operation.get("x-drover-stream"):
            continue
        # Query parameters, one at a time.
        declared = operation.get("parameters", []) + item.get("parameters", [])
        parameters = [spec["components"]["parameters"][p["$ref"].split("/")[-1]] if "$ref" in p else p for p in declared]
        for parameter in parameters:
            if parameter.get("in") != "query":
                continue
            values = HOSTILE_NUMBERS if kind(parameter.get("schema", {})) == "number" else HOSTILE_STRINGS
            for value in values:
                # A blocking query with a huge index would wait: ask it not to.
                extra = "&wait=1ms" if parameter["name"] == "index" else ""
                status, answer = request(method, f"{concrete}?{parameter['name']}={value}{extra}")
                sent += 1
                if status >= 500:
                    problems.append(f"{method.upper()} {route}?{parameter['name']}={value}: {status} {answer[:200]!r}")
        # Body fields, one at a time.
        content = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json")
        if not content:
            continue
        body_fields = fields(content.get("schema", {}))
        for path, field_kind in body_fields:
            values = HOSTILE_NUMBERS if field_kind == "number" else [json.dumps(v) for v in HOSTILE_STRINGS]
            for value in values:
                status, answer = request(method, concrete, raw=body_with(path, value))
                sent += 1
                if status >= 500:
                    problems.append(f"{method.upper()} {route} {'.'.join(path)}={value}: {status} {answer[:200]!r}")
        strings = [path for path, field_kind in body_fields if field_kind == "string"]
        if strings:
            status, answer = request(method, concrete, raw=body_with(strings[0], json.dumps(TEN_MB)))
            sent += 1
            if status >= 500 or status < 400:
                problems.append(f"{method.upper()} {route} {'.'.join(strings[0])}=<10 MB>: {status} {answer[:200]!r}")

print(f"{sent} hostile requests")
for problem in problems[:40]:
    print("  " + problem)
check(not problems, f"no hostile value got a 5xx ({len(problems)} did)")
check(request("get", "/v1/status/leader")[0] == 200, "the gateway still answers")
check(sent > 1000, "the table covered the document")
print("all checks passed")
