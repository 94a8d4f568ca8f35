"""Reference servers that show this machine's ceiling, measured beside the
real servers by bench/run.py (stdlib + uvloop + httptools, from corral's venv).

Neither is a server anyone should run: they skip everything that makes a
server correct (no Host or size checks, no keep-alive rules, no error
answers, no flow control, no timeouts).

* ``minimal``: an ASGI loop with nothing but the calls every ASGI server
  must make. httptools parses; each request gets a scope dict and its own
  coroutine, stepped without a Task; ``send`` returns an already-done
  future instead of a coroutine; the response head is cached per
  (status, headers) and sent in one write with the body.
* ``bare``: never calls the app; answers every request with the bytes of
  the hello response. The cost of the loop, the parser and the kernel alone.

Usage: python bench/reference.py minimal|bare PORT MODULE:ATTR
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys

import httptools
import uvloop

ASGI = {"version": "3.0", "spec_version": "2.4"}
BARE_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, world!"


class Bare(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        self.transport.write(BARE_RESPONSE)


def minimal_protocol(app, loop):
    done = loop.create_future()
    done.set_result(None)
    request_message = {"type": "http.request", "body": b"", "more_body": False}
    heads: dict = {}

    class Minimal(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.headers = []
            self.start = None

        def data_received(self, data):
            self.parser.feed_data(data)

        def on_url(self, url):
            self.url = url

        def on_header(self, name, value):
            self.headers.append((name.lower(), value))

        def on_message_complete(self):
            path, _, query = self.url.partition(b"?")
            scope = {
                "type": "http", "asgi": ASGI, "http_version": "1.1", "server": None, "client": None,
                "scheme": "http", "method": "GET", "root_path": "", "path": path.decode("latin-1"),
                "raw_path": path, "query_string": query, "headers": self.headers, "state": {},
            }
            self.headers = []
            coro = app(scope, self.receive, self.send)
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:
                raise RuntimeError("the minimal reference serves only apps that never wait")

        async def receive(self):
            return request_message

        def send(self, message):
            if message["type"] == "http.response.start":
                self.start = message
                return done
            start = self.start
            key = (start["status"], tuple(start["headers"]))
            head = heads.get(key)
            if head is None:
                lines = b"".join(b"%s: %s\r\n" % pair for pair in start["headers"])
                head = heads[key] = b"HTTP/1.1 %d OK\r\n%s\r\n" % (start["status"], lines)
            self.transport.write(head + message.get("body", b""))
            return done

    return Minimal


async def serve(mode: str, port: int, app) -> None:
    loop = asyncio.get_running_loop()
    factory = Bare if mode == "bare" else minimal_protocol(app, loop)
    server = await loop.create_server(factory, "127.0.0.1", port, backlog=2048)
    await server.serve_forever()


def main() -> None:
    mode, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode not in ("minimal", "bare"):
        sys.exit("usage: reference.py minimal|bare PORT MODULE:ATTR")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
    module, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module), attr)
    uvloop.run(serve(mode, port, app))


if __name__ == "__main__":
    main()
