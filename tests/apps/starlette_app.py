"""A Starlette app exercising the usual features end to end."""

import asyncio
import sys
import threading
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}
    print("starlette lifespan shutdown", file=sys.stderr, flush=True)


async def homepage(request):
    return PlainTextResponse(f"{request.state.greeting} at {request.url.path}")


def sync_endpoint(request):
    thread = threading.current_thread()
    return JSONResponse({"thread": thread.name, "main": thread is threading.main_thread()})


async def echo_json(request):
    return JSONResponse({"got": await request.json()})


async def item(request):
    return JSONResponse({"id": request.path_params["item_id"], "url": str(request.url_for("item", item_id=7))})


async def stream(request):
    async def parts():
        for index in range(3):
            yield f"part{index};"
            await asyncio.sleep(0)

    return StreamingResponse(parts(), media_type="text/plain")


def record(name: str) -> None:
    print(f"starlette background task ran for {name}", file=sys.stderr, flush=True)


async def background(request):
    return PlainTextResponse("accepted", status_code=202, background=BackgroundTask(record, request.query_params["name"]))


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/sync", sync_endpoint),
        Route("/json", echo_json, methods=["POST"]),
        Route("/items/{item_id:int}", item, name="item"),
        Route("/stream", stream),
        Route("/background", background, methods=["POST"]),
    ],
    lifespan=lifespan,
)
