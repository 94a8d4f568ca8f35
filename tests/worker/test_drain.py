"""The stop without a subprocess: a real uvloop loop, a real
listener, a real client socket.

A connection the loop accepted in the same pass as the stop landed has its
``connection_made`` still queued behind the stop when the drain starts.
The stop must count it and answer its request; a worker that counted
only what was already made exited under it (the client saw the connection
closed without a response: ``RemoteDisconnected`` in the HUP-under-churn
test, once in three runs under CPU load)."""

import asyncio
import os
import socket
import threading

import pytest

from corral.config import Config
from corral.interfaces.asgi import ASGIHandler
from corral.interfaces.lifespan import Lifespan
from corral.io.state import ServerState
from corral.worker.accept import Listener
from corral.worker.process import Worker

uvloop = pytest.importorskip("uvloop", reason="the accept and callback order under test is uvloop's (libuv's)")


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hi"})


def read_all(sock) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("mode", ["graceful", "fast"])
def test_a_connection_accepted_as_the_stop_lands_is_answered(mode):
    # Graceful (TERM): served, with Connection: close. Fast (QUIT): 503, as
    # the connections still queued get.
    loop = uvloop.new_event_loop()
    read_end, write_end = os.pipe()
    config = Config(app="x:y", access_log=False)
    worker = Worker(config, [], write_end)
    worker.loop = loop
    state = worker.state = ServerState(config, loop)
    state.handler = ASGIHandler(hello, state).new_cycle
    worker.lifespan = Lifespan(hello, "off", state.lifespan_state)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    accepted = []

    def factory():
        accepted.append(state.now)
        return worker._connection()

    listener = Listener(loop, listening, factory, 8, exclusive=False)
    client = None
    received = []

    def read_then_close():
        received.append(read_all(client))
        client.close()

    reader = threading.Thread(target=read_then_close)

    async def scenario():
        nonlocal client
        await listener.start()
        worker.listeners.append(listener)
        # The client's request waits in the kernel's queue.
        client = socket.create_connection(listening.getsockname())
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader.start()  # reads to the end, then closes: the drain's lingering close ends at once
        # The stop lands: this task's next step is queued now, and the
        # loop's poll that follows accepts the connection, queueing its
        # connection_made behind that step (libuv runs the ready callbacks,
        # then polls).
        await asyncio.sleep(0)
        assert accepted and not state.connections, "the race is set up: accepted, not yet made"
        await (worker._graceful_shutdown() if mode == "graceful" else worker._fast_shutdown())
        return state.requests + state.counters["rejected_busy"]

    try:
        served = loop.run_until_complete(scenario())
        assert served == 1  # answered before the shutdown ended, as the process exits then
        reader.join(5)
        response = received[0]
        if mode == "graceful":
            assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
            assert response.endswith(b"hi")
        else:
            assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), response
        assert b"\r\nconnection: close\r\n" in response.lower()
    finally:
        if client is not None and not reader.is_alive():
            client.close()
        listening.close()
        state.stepper.close()
        loop.close()
        os.close(read_end)
        os.close(write_end)
