"""A FastAPI app used as its users use it (tests/integration/test_compat_fastapi.py).

Dependencies with ``yield`` (their teardown is recorded), ``BackgroundTasks``,
a WebSocket, Server-Sent Events (a ``StreamingResponse`` and FastAPI's own
``EventSourceResponse``) that a client may leave early, and ``UploadFile``.
What the app saw is kept in ``EVENTS`` and read back through ``GET /events``,
so a test waits on the app's own record (one worker).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter

from fastapi import BackgroundTasks, Depends, FastAPI, File, Form, Header, HTTPException, UploadFile, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.websockets import WebSocketDisconnect
from pydantic import BaseModel

EVENTS: Counter = Counter()  # what the app saw: dependency teardowns, background tasks, streams
LOG: list[str] = []  # the order of teardowns and tasks

app = FastAPI()


# -- dependencies with yield -------------------------------------------------


class Session:
    def __init__(self, name: str) -> None:
        self.name = name
        self.queries = 0


async def get_session():
    session = Session("db")
    EVENTS["session opened"] += 1
    try:
        yield session
    finally:
        EVENTS["session closed"] += 1
        LOG.append(f"session closed after {session.queries} queries")


def get_user(x_user: str | None = Header(default=None)):
    """A sync dependency with yield (run in a thread by FastAPI)."""
    if x_user is None:
        raise HTTPException(status_code=401, detail="no user")
    EVENTS["user opened"] += 1
    try:
        yield x_user
    finally:
        EVENTS["user closed"] += 1


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.post("/items/{item_id}", status_code=201)
async def put_item(item_id: int, item: Item, session: Session = Depends(get_session), user: str = Depends(get_user)):
    session.queries += 1
    return {"id": item_id, "item": item.model_dump(), "by": user, "session": session.name}


@app.get("/items/{item_id}")
def get_item(item_id: int, q: str | None = None, session: Session = Depends(get_session)):
    session.queries += 2
    if item_id == 404:
        raise HTTPException(status_code=404, detail="item not found", headers={"x-error": "missing"})
    return {"id": item_id, "q": q}


# -- background tasks ----------------------------------------------------------


def record(name: str) -> None:
    EVENTS["background"] += 1
    LOG.append(f"background {name}")


async def record_async(name: str) -> None:
    await asyncio.sleep(0)
    EVENTS["background async"] += 1
    LOG.append(f"background async {name}")


@app.post("/signup")
async def signup(name: str = Form(), background: BackgroundTasks = None, session: Session = Depends(get_session)):
    background.add_task(record, name)
    background.add_task(record_async, name)
    return {"welcome": name}


# -- file upload ---------------------------------------------------------------


@app.post("/upload")
async def upload(files: list[UploadFile] = File(), note: str = Form(default="")):
    out = []
    for upload in files:
        data = await upload.read()
        out.append({"filename": upload.filename, "type": upload.content_type, "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest()})
    return {"note": note, "files": out}


# -- server-sent events ---------------------------------------------------------


async def ticks(kind: str):
    """An endless event stream; its ``finally`` counts the streams that ended."""
    EVENTS[f"{kind} started"] += 1
    number = 0
    try:
        while True:
            yield f"id: {number}\nevent: tick\ndata: {number}\n\n"
            number += 1
            await asyncio.sleep(0.01)
    finally:
        EVENTS[f"{kind} ended"] += 1


@app.get("/sse")
async def sse():
    return StreamingResponse(ticks("sse"), media_type="text/event-stream", headers={"cache-control": "no-cache"})


try:  # FastAPI >= 0.135: SSE from a generator path operation
    from fastapi.sse import EventSourceResponse, ServerSentEvent
except ImportError:  # pragma: no cover - an older FastAPI
    EventSourceResponse = None
else:

    @app.get("/sse-native", response_class=EventSourceResponse)
    async def sse_native():
        EVENTS["native started"] += 1
        number = 0
        try:
            while True:
                yield ServerSentEvent(data={"n": number}, event="tick", id=str(number))
                number += 1
                await asyncio.sleep(0.01)
        finally:
            EVENTS["native ended"] += 1


@app.get("/sse-finite")
async def sse_finite():
    async def three():
        for number in range(3):
            yield f"data: {number}\n\n"

    return StreamingResponse(three(), media_type="text/event-stream")


async def raw_stream(scope, receive, send):
    """A plain ASGI app mounted under /raw: an endless stream that handles its
    client leaving (send() raises OSError, ASGI 2.4) and returns, or, under
    /raw/defect, has a defect of its own while doing so."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    number = 0
    try:
        while True:
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % number, "more_body": True})
            number += 1
            await asyncio.sleep(0.01)
    except OSError:
        EVENTS["raw handled"] += 1
        if scope["path"].endswith("/defect"):
            raise LookupError("a defect while cleaning up") from None


async def listening_stream(scope, receive, send):
    """A plain ASGI app that listens for http.disconnect while it streams
    and returns when told (as Starlette's StreamingResponse does under ASGI
    spec < 2.4): handled, not an error."""

    async def until_disconnect():
        while (await receive())["type"] != "http.disconnect":
            pass

    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    listener = asyncio.ensure_future(until_disconnect())
    number = 0
    try:
        while not listener.done():
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % number, "more_body": True})
            number += 1
            await asyncio.wait([listener], timeout=0.01)
    finally:
        listener.cancel()
        EVENTS["listened"] += 1


async def raw(scope, receive, send):
    handler = listening_stream if scope["path"].endswith("/listens") else raw_stream
    await handler(scope, receive, send)


app.mount("/raw", raw)


# -- websocket -------------------------------------------------------------------


@app.websocket("/ws/{room}")
async def websocket(ws: WebSocket, room: str, session: Session = Depends(get_session)):
    await ws.accept()
    try:
        while True:
            message = await ws.receive_text()
            if message == "bye":
                await ws.close(code=4000, reason="bye")
                EVENTS["ws closed by server"] += 1
                return
            await ws.send_json({"room": room, "echo": message})
    except WebSocketDisconnect as exc:
        EVENTS["ws disconnect"] += 1
        LOG.append(f"ws disconnect {exc.code}")


@app.websocket("/ws-ticks")
async def websocket_ticks(ws: WebSocket):
    """Server push: sends until the client leaves (the send raises), no handler."""
    await ws.accept()
    EVENTS["ws ticks started"] += 1
    try:
        number = 0
        while True:
            await ws.send_text(f"tick {number}")
            number += 1
            await asyncio.sleep(0.01)
    finally:
        EVENTS["ws ticks ended"] += 1


# -- what the app saw ---------------------------------------------------------------


@app.get("/events")
async def events():
    return {"events": dict(EVENTS), "log": LOG}
