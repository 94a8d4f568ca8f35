"""A Quart app (tests/integration/test_compat_quart.py): JSON, a path
parameter, a POST body, a streamed response, a WebSocket, startup state
(``before_serving``), an error handler."""

from __future__ import annotations

import asyncio

from quart import Quart, abort, jsonify, request, websocket

app = Quart(__name__)
STARTED = []


@app.before_serving
async def startup():
    STARTED.append(True)


@app.get("/")
async def index():
    return {"framework": "quart", "started": bool(STARTED)}


@app.get("/users/<int:user_id>")
async def user(user_id: int):
    if user_id == 404:
        abort(404)
    return jsonify(id=user_id, tab=request.args.get("tab", "profile"))


@app.post("/users")
async def create_user():
    data = await request.get_json()
    if not data or "name" not in data:
        return {"error": "name is required"}, 400
    return {"created": data["name"]}, 201, {"Location": "/users/1"}


@app.post("/form")
async def form():
    fields = await request.form
    files = await request.files
    return {"fields": fields.to_dict(), "files": {name: len(f.read()) for name, f in files.items()}}


@app.get("/stream")
async def stream():
    async def lines():
        for number in range(4):
            yield f"row {number}\n".encode()
            await asyncio.sleep(0)

    return lines(), 200, {"Content-Type": "text/plain; charset=utf-8"}


@app.get("/cookie")
async def cookie():
    response = await app.make_response("cookie set")
    response.set_cookie("flavour", "oat", httponly=True)
    return response


@app.websocket("/ws")
async def ws():
    while True:
        text = await websocket.receive()
        if text == "bye":
            await websocket.close(4004)
            return
        await websocket.send_json({"echo": text, "path": websocket.path})
