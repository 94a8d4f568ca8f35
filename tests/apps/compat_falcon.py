"""Falcon, both flavours (tests/integration/test_compat_falcon.py): the same
resources as a WSGI ``falcon.App`` (``wsgi_app``) and an ASGI
``falcon.asgi.App`` (``asgi_app``, plus a WebSocket): JSON, a path
parameter, a POST body (``media``), a streamed body, an error, a cookie."""

from __future__ import annotations

import falcon
import falcon.asgi


def _item(item_id: int, req) -> dict:
    return {"id": item_id, "q": req.get_param("q"), "flavour": req.context.flavour}


class Flavour:
    """Middleware: which flavour answered, and a header on every response."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour

    def process_request(self, req, resp):
        req.context.flavour = self.flavour

    def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("X-Flavour", self.flavour)


class AsyncFlavour(Flavour):
    async def process_request(self, req, resp):
        req.context.flavour = self.flavour

    async def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("X-Flavour", self.flavour)


# -- WSGI ----------------------------------------------------------------------


class Items:
    def on_get(self, req, resp, item_id):
        if item_id == 404:
            raise falcon.HTTPNotFound(title="no such item")
        resp.media = _item(item_id, req)

    def on_post(self, req, resp, item_id):
        body = req.get_media()
        resp.status = falcon.HTTP_201
        resp.location = f"/items/{item_id}"
        resp.media = {"id": item_id, "stored": body}
        resp.set_cookie("last", str(item_id), secure=False, http_only=True, path="/")


class Stream:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = (f"chunk {n}\n".encode() for n in range(4))


class Echo:
    def on_put(self, req, resp):
        resp.content_type = req.content_type or falcon.MEDIA_TEXT
        resp.data = req.bounded_stream.read()


wsgi_app = falcon.App(middleware=[Flavour("wsgi")])
wsgi_app.add_route("/items/{item_id:int}", Items())
wsgi_app.add_route("/stream", Stream())
wsgi_app.add_route("/echo", Echo())


# -- ASGI ----------------------------------------------------------------------


class AsyncItems:
    async def on_get(self, req, resp, item_id):
        if item_id == 404:
            raise falcon.HTTPNotFound(title="no such item")
        resp.media = _item(item_id, req)

    async def on_post(self, req, resp, item_id):
        body = await req.get_media()
        resp.status = falcon.HTTP_201
        resp.location = f"/items/{item_id}"
        resp.media = {"id": item_id, "stored": body}
        resp.set_cookie("last", str(item_id), secure=False, http_only=True, path="/")


class AsyncStream:
    async def on_get(self, req, resp):
        async def chunks():
            for n in range(4):
                yield f"chunk {n}\n".encode()

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = chunks()


class AsyncEcho:
    async def on_put(self, req, resp):
        resp.content_type = req.content_type or falcon.MEDIA_TEXT
        resp.data = await req.bounded_stream.read()


class Chat:
    async def on_websocket(self, req, ws, room):
        await ws.accept()
        while True:
            try:
                text = await ws.receive_text()
            except falcon.WebSocketDisconnected:
                return
            if text == "bye":
                await ws.close(code=4003)
                return
            await ws.send_media({"room": room, "echo": text})


asgi_app = falcon.asgi.App(middleware=[AsyncFlavour("asgi")])
asgi_app.add_route("/items/{item_id:int}", AsyncItems())
asgi_app.add_route("/stream", AsyncStream())
asgi_app.add_route("/echo", AsyncEcho())
asgi_app.add_route("/chat/{room}", Chat())
