"""A Litestar app (tests/integration/test_compat_litestar.py): JSON, a path
parameter, a POST body validated into a dataclass, a streamed response, a
WebSocket, lifespan (on_startup) state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from litestar import Litestar, Request, WebSocket, get, post, websocket
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.response import Stream


@dataclass
class Order:
    item: str
    quantity: int
    notes: list[str] = field(default_factory=list)


@get("/")
async def index(state: State) -> dict:
    return {"framework": "litestar", "started": state.started}


@get("/orders/{order_id:int}")
async def get_order(order_id: int, verbose: bool = False) -> dict:
    if order_id == 404:
        raise NotFoundException(detail="no such order")
    return {"id": order_id, "verbose": verbose}


@post("/orders")
async def create_order(data: Order, request: Request) -> dict:
    return {"item": data.item, "total": data.quantity * 3, "notes": data.notes,
            "type": request.headers.get("content-type")}


@get("/stream")
async def stream() -> Stream:
    async def numbers():
        for number in range(4):
            yield f"line {number}\n"
            await asyncio.sleep(0)

    return Stream(numbers(), media_type="text/plain")


@get("/sync", sync_to_thread=True)
def sync_handler() -> str:
    return "from a thread"


@websocket("/ws")
async def ws_handler(socket: WebSocket) -> None:
    await socket.accept()
    while True:
        data = await socket.receive_json()
        if data.get("bye"):
            await socket.close(code=4002, reason="bye")
            return
        await socket.send_json({"echo": data})


def startup(app: Litestar) -> None:
    app.state.started = True


app = Litestar([index, get_order, create_order, stream, sync_handler, ws_handler], on_startup=[startup])
