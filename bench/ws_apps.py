"""Plain ASGI apps for the WebSocket benchmarks (bench/ws_broadcast.py, bench/ws_idle.py).

The same code runs under every server. ``GET /`` answers ``ok`` so the
driver can tell the server is up.
"""

CLIENTS = set()  # the ``send`` callables of every connected broadcast client


async def _http_or_lifespan(scope, receive, send) -> bool:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return True
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return True
    return False


async def idle(scope, receive, send):
    """Accept, then wait; echo whatever arrives."""
    if await _http_or_lifespan(scope, receive, send):
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


async def broadcast(scope, receive, send):
    """Every client joins; the text ``go M PAYLOAD`` from any of them makes the
    app send PAYLOAD to every client, M times, awaiting each send in turn."""
    if await _http_or_lifespan(scope, receive, send):
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    CLIENTS.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or ""
            if text.startswith("go "):
                _, count, payload = text.split(" ", 2)
                out = {"type": "websocket.send", "text": payload}
                for _ in range(int(count)):
                    for client in list(CLIENTS):
                        await client(out)
    finally:
        CLIENTS.discard(send)
