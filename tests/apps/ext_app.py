"""ASGI extensions (tests/integration/test_asgi_ext.py): pathsend,
zerocopysend, early hints, response trailers, and Starlette's FileResponse
(which uses pathsend when the scope offers it). The file to send is named by
the query string (a path under the test's tmp dir)."""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs

from starlette.responses import FileResponse

SEEN: list = []  # the message types Starlette's FileResponse sent, last request


def _query(scope) -> dict:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    path = scope["path"]
    q = _query(scope)
    if path == "/extensions":
        body = json.dumps(sorted(scope.get("extensions", {}))).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/pathsend":
        headers = [(b"content-type", b"application/octet-stream")]
        if q.get("length"):
            headers.append((b"content-length", q["length"].encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": q["file"]})
    elif path == "/zerocopy":
        # Two slices of the file, by offset and count, then bytes of the app's own.
        with open(q["file"], "rb") as file:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": file, "offset": int(q.get("offset", 0)),
                        "count": int(q["count"]), "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 0, "count": 3, "more_body": True})
            await send({"type": "http.response.body", "body": b"|end"})
    elif path == "/zerocopy-position":
        # No offset: from the file's position, which advances; no count: to the end.
        with open(q["file"], "rb") as file:
            file.seek(2)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": file, "count": 3, "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file, "more_body": False})
    elif path == "/zerocopy-short":
        # More bytes asked for than the file has (as if truncated meanwhile): the response is cut.
        with open(q["file"], "rb") as file:
            size = os.fstat(file.fileno()).st_size
            headers = [(b"content-length", b"%d" % (size + 100))] if q.get("length") else []
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 0, "count": size + 100,
                        "more_body": bool(q.get("more"))})
            await send({"type": "http.response.body", "body": b""})
    elif path == "/hint":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style",
                                                                  b"</app.js>; rel=preload; as=script"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hinted"})
    elif path == "/bad-hint":
        try:
            await send({"type": "http.response.early_hint", "links": [b"</x>\r\nset-cookie: a=b"]})
            body = b"accepted"
        except ValueError:
            body = b"refused"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")],
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"42")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-status", b"ok")]})
        if q.get("then") == "body":
            pass
    elif path == "/starlette":
        SEEN.clear()

        async def record(message):
            SEEN.append(message["type"])
            await send(message)

        await FileResponse(q["file"])(scope, receive, record)
    elif path == "/seen":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(SEEN).encode()})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
