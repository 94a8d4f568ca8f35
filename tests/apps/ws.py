"""Test app: WebSocket routes (plain ASGI), plus a few HTTP helpers.

Lines printed to stderr let tests wait on what the app saw.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs

RELEASE = None  # an asyncio.Event, set by GET /release


def say(*parts):
    print(*parts, flush=True, file=sys.stderr)


def _release_event():
    global RELEASE
    if RELEASE is None:
        RELEASE = asyncio.Event()
    return RELEASE


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                say("lifespan shutdown ran")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "http":
        if scope["path"] == "/release":
            _release_event().set()
        body = b"http " + scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    assert kind == "websocket"
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"][len(scope["root_path"]):]  # routes below root_path, as frameworks do
    handler = scope_view if path.startswith("/scope") else ROUTES.get(path, echo)
    await handler(scope, receive, send, query)


async def _connect(receive):
    message = await receive()
    assert message == {"type": "websocket.connect"}, message


async def _until_disconnect(receive, label):
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"{label} disconnect {message['code']} {message.get('reason', '')!r}")
            return message


async def echo(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"echo disconnect {message['code']} {message.get('reason', '')!r} after {count}")
            return
        count += 1
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_view(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    view = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
    view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    view["raw_path"] = scope["raw_path"].decode("latin-1")
    view["query_string"] = scope["query_string"].decode("latin-1")
    view["state"] = dict(scope["state"])
    await send({"type": "websocket.send", "text": json.dumps(view)})
    await send({"type": "websocket.close", "code": 1000})


async def reject(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.close"})


async def deny(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})


async def subprotocol(scope, receive, send, query):
    await _connect(receive)
    chosen = scope["subprotocols"][-1] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen, "headers": [(b"x-chosen", (chosen or "-").encode())]})
    await send({"type": "websocket.send", "text": json.dumps(scope["subprotocols"])})
    await _until_disconnect(receive, "subprotocol")


async def close(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": int(query.get("code", 1000)), "reason": query.get("reason", "")})
    message = await receive()
    say(f"close then {message['type']} {message.get('code')}")


async def raise_before(scope, receive, send, query):
    await _connect(receive)
    raise RuntimeError("boom before accept")


async def raise_after(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("boom after accept")


async def return_after(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})


async def no_answer(scope, receive, send, query):
    await _connect(receive)


async def bad_accept(scope, receive, send, query):
    await _connect(receive)
    try:
        await send({"type": "websocket.accept", "headers": [(b"x-evil", b"a\r\nset-cookie: x")]})
    except RuntimeError as exc:
        say(f"bad accept refused: {exc}")
        await send({"type": "websocket.close"})


async def flood_out(scope, receive, send, query):
    """Send ``count`` binary messages of ``size`` bytes as fast as send allows."""
    await _connect(receive)
    await send({"type": "websocket.accept"})
    count, size = int(query["count"]), int(query["size"])
    payload = b"x" * size
    for index in range(count):
        await send({"type": "websocket.send", "bytes": payload})
        if index % 10 == 9:
            say(f"flood_out sent {index + 1}")
    say("flood_out done")
    await _until_disconnect(receive, "flood_out")


async def hold(scope, receive, send, query):
    """Read nothing until GET /release, then count every message."""
    await _connect(receive)
    await send({"type": "websocket.accept"})
    say("hold accepted")
    await _release_event().wait()
    say("hold released")
    count = size = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"hold received {count} messages, {size} bytes; disconnect {message['code']}")
            return
        count += 1
        size += len(message.get("bytes") or b"")
        if message.get("text") == "done":
            say(f"hold received {count} messages, {size} bytes")
            await send({"type": "websocket.send", "text": f"{count} {size}"})


async def wait_disconnect(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    say("waiting accepted")
    await _until_disconnect(receive, "waiting")
    if query.get("linger"):
        await asyncio.sleep(float(query["linger"]))
        say("waiting app finished")


async def slow_accept(scope, receive, send, query):
    await _connect(receive)
    say("slow accept waiting")
    await _release_event().wait()
    try:
        await send({"type": "websocket.accept"})
    except OSError as exc:
        say(f"slow accept failed: {type(exc).__name__}")
        return
    await _until_disconnect(receive, "slow")


async def send_after_close(scope, receive, send, query):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    message = await receive()
    say(f"saw {message['type']} {message.get('code')}")
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except OSError as exc:
        say(f"send after disconnect raised {type(exc).__name__}")


ROUTES = {
    "/echo": echo,
    "/scope": scope_view,
    "/reject": reject,
    "/deny": deny,
    "/subprotocol": subprotocol,
    "/close": close,
    "/raise-before": raise_before,
    "/raise-after": raise_after,
    "/return": return_after,
    "/no-answer": no_answer,
    "/bad-accept": bad_accept,
    "/flood-out": flood_out,
    "/hold": hold,
    "/wait": wait_disconnect,
    "/slow-accept": slow_accept,
    "/send-after-close": send_after_close,
}


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"wsgi"]
