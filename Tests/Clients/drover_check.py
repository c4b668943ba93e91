"""What the client scripts share: a check that stops the script at the first failure, and a JSON
call to the gateway with a token."""

import json
import sys
import urllib.error
import urllib.request


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def call(base, method, path, body=None, token=None):
    """One request to `base` + `path`; returns the status and the decoded JSON body (None when empty)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Nomad-Token"] = token
    request = urllib.request.Request(base + path, method=method, headers=headers, data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
