"""Test app for the HTTP/1.1 and ASGI edge cases; other paths go to basic.app.

Routes are matched on the path below ``root_path`` so the app also works
under ``--root-path``. Lines printed to stderr are what tests wait on.
"""

import asyncio
import json
import os
import sys

import basic

GATE = asyncio.Event()


def say(text: str) -> None:
    os.write(2, (str(text) + "\n").encode())  # one write: lines never mix


async def app(scope, receive, send):
    if scope["type"] != "http":
        return await basic.app(scope, receive, send)
    root = scope["root_path"]
    path = scope["path"]
    if root and path.startswith(root):
        path = path[len(root):]
    handler = ROUTES.get(path)
    if handler is None:
        if path.startswith("/scope"):
            handler = scope_view
        else:
            return await basic.app(scope, receive, send)
    await handler(scope, receive, send)


async def respond(send, body: bytes, status: int = 200, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client gone")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def scope_view(scope, receive, send):
    view = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
    view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    view["raw_path"] = scope["raw_path"].decode("latin-1")
    view["query_string"] = scope["query_string"].decode("latin-1")
    view["state"] = dict(scope["state"])
    view["keys"] = sorted(scope)
    await respond(send, json.dumps(view).encode(), headers=[(b"x-route", b"scope")])


async def mutate_state(scope, receive, send):
    scope["state"]["mutated"] = True
    scope["state"]["started"] = "overwritten"
    await respond(send, b"mutated")


async def gated_echo(scope, receive, send):
    """Waits for /open-gate before reading the body: the 100 must wait too."""
    say("gated-echo waiting")
    await GATE.wait()
    GATE.clear()
    say("gated-echo receiving")
    await respond(send, await read_body(receive))


async def open_gate(scope, receive, send):
    GATE.set()
    await respond(send, b"opened")


async def reject_early(scope, receive, send):
    """Answers without reading the body: no 100 Continue may be sent."""
    await respond(send, b"too large", status=413)


async def start_only(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def short_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"abc"})


async def short_body_streamed(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"abc", "more_body": True})
    await send({"type": "http.response.body", "body": b"def"})


async def long_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"abcdef"})


async def listen_then_respond(scope, receive, send):
    """A task waits on receive() after the body; it must get http.disconnect
    once the response is complete (ASGI 2.4)."""
    await read_body(receive)
    listener = asyncio.get_running_loop().create_task(receive())
    await asyncio.sleep(0)
    await respond(send, b"done")
    message = await asyncio.wait_for(listener, 5)
    say(f"listener got {message['type']}")


async def receive_after_response(scope, receive, send):
    await respond(send, b"done")
    message = await receive()
    say(f"after response got {message['type']}")


async def body_after_complete(scope, receive, send):
    await respond(send, b"complete")
    await send({"type": "http.response.body", "body": b"extra"})


async def informational(scope, receive, send):
    await send({"type": "http.response.start", "status": 101, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def app_connection_header(scope, receive, send):
    await respond(send, b"bye", headers=[(b"connection", b"close")])


async def streamed_304(scope, receive, send):
    await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", b'"x"')]})
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def headers_view(scope, receive, send):
    await respond(send, json.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]).encode())


async def echo_100(scope, receive, send):
    say("echo-100 receiving")
    await respond(send, await read_body(receive))


async def long_poll(scope, receive, send):
    """Reads the whole request, then waits for the client to go (or forever)."""
    await read_body(receive)
    say("long-poll waiting")
    message = await receive()
    say(f"long-poll got {message['type']}")
    await respond(send, b"late")


async def two_lengths(scope, receive, send):
    # Conflicting framing from the app (issue 9 finding b).
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"10"), (b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"abc"})


async def own_headers(scope, receive, send):
    # Fields corral sets or manages itself (issue 9 findings h and i).
    await respond(send, b"own", headers=[(b"date", b"Tue, 01 Jan 2030 00:00:00 GMT"), (b"server", b"app/1.0"),
                                          (b"keep-alive", b"timeout=99")])


ROUTES = {
    "/two-lengths": two_lengths,
    "/own-headers": own_headers,
    "/long-poll": long_poll,
    "/mutate-state": mutate_state,
    "/gated-echo": gated_echo,
    "/open-gate": open_gate,
    "/reject-early": reject_early,
    "/start-only": start_only,
    "/short-body": short_body,
    "/short-body-streamed": short_body_streamed,
    "/long-body": long_body,
    "/listen-then-respond": listen_then_respond,
    "/receive-after-response": receive_after_response,
    "/body-after-complete": body_after_complete,
    "/informational": informational,
    "/app-connection-close": app_connection_header,
    "/304": streamed_304,
    "/headers": headers_view,
    "/echo-100": echo_100,
}
