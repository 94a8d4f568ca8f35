"""App for bench/overload.py: hello at /, a 10 MB response streamed in 64 KiB chunks at /big."""

CHUNK = b"x" * 65536
SIZE = 10 * 1024 * 1024


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % SIZE)]})
        for _ in range(SIZE // len(CHUNK)):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
