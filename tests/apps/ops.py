"""Test app for the operators' options (tests/integration/test_ops_*.py)."""

import asyncio
import json
import os

LEAK = []  # /leak keeps 1 MiB per request here


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/ids":
        body = json.dumps({
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
            "groups": sorted(os.getgroups()), "cwd": os.getcwd(), "home": os.environ.get("HOME"),
            "greeting": os.environ.get("GREETING"), "shadowed": os.environ.get("OPS_SHADOWED"),
            "umask": _umask(), "pid": os.getpid(), "resource": os.environ.get("OPS_RESOURCE"),
        }).encode()
    elif path == "/leak":  # 1 MiB kept per request (written, so resident), then ?SECONDS of sleep
        LEAK.append(b"\x01" * (1024 * 1024))
        await asyncio.sleep(float(scope["query_string"].decode() or "0"))
        body = str(os.getpid()).encode()
    else:
        body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
