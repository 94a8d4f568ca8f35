"""A FastAPI app: async and sync endpoints, JSON bodies, path parameters,
streaming and background tasks."""

import asyncio
import sys
import threading
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(app):
    yield {"db": "connected"}
    print("fastapi lifespan shutdown", file=sys.stderr, flush=True)


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/async")
async def read_async(request: Request):
    return {"kind": "async", "db": request.state.db, "main": threading.current_thread() is threading.main_thread()}


@app.get("/sync")
def read_sync():
    thread = threading.current_thread()
    return {"kind": "sync", "thread": thread.name, "main": thread is threading.main_thread()}


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return {"item": item.model_dump(), "total": round(item.price * 1.2, 2)}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.get("/stream")
async def stream():
    async def numbers():
        for number in range(5):
            yield f"{number}\n"
            await asyncio.sleep(0)

    return StreamingResponse(numbers(), media_type="text/plain")


def write_log(message: str) -> None:
    print(f"fastapi background task: {message}", file=sys.stderr, flush=True)


@app.post("/notify/{email}")
async def notify(email: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(write_log, f"notified {email}")
    return {"message": "notification scheduled"}
