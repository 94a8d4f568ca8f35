"""A listener's two ways to accept (worker/accept.py): the loop's server,
and, while the overload control watches, its own accept loop that passes
each new connection through the sieve first and hands the rest to the
protocols. A real loop (uvloop, and asyncio's, which a worker uses without
uvloop), real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from corral.worker import accept
from corral.worker.accept import Listener


class Served(asyncio.Protocol):
    """The protocols' stand-in: answers what it read."""

    seen: list = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        Served.seen.append(data)
        self.transport.write(b"SERVED " + data.split(b" ")[1])
        self.transport.close()


class Sieve:
    """Answers the requests for /shed itself, leaves the rest (peeked) to the
    protocols; has room while ``open``."""

    def __init__(self):
        self.asked = 0
        self.open = True

    def room(self) -> bool:
        return self.open

    def sieve(self, conn) -> bool:
        self.asked += 1
        head = conn.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # there: sent before the loop ran
        if not head.startswith(b"GET /shed "):
            return False
        conn.recv(100)
        conn.sendall(b"SIEVED")
        conn.close()
        return True


@pytest.fixture(params=["uvloop", "asyncio"])
def setup(request):
    loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()  # without uvloop: asyncio's
    real = socket.socket()
    real.bind(("127.0.0.1", 0))
    real.listen(64)
    sieve = Sieve()
    listener = Listener(loop, real, Served, 64, exclusive=True, sieve=sieve)
    Served.seen = []
    yield loop, real, listener, sieve
    listener.stop()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    accept.forget_loop(loop)
    real.close()


def sent(port: int, path: str) -> socket.socket:
    """A client whose request is in the kernel before the loop runs again
    (so the sieve finds it whole)."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(f"GET {path} HTTP/1.1\r\n\r\n".encode())
    client.setblocking(False)
    return client


async def answer(loop, client: socket.socket) -> bytes:
    data = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(client, 100), 5):
        data += chunk
    client.close()
    return data


def ask(loop, port: int, *paths: str) -> list:
    clients = [sent(port, path) for path in paths]

    async def answers():
        return await asyncio.gather(*(answer(loop, client) for client in clients))

    return loop.run_until_complete(answers())


def until(loop, condition) -> None:
    async def wait():
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.002)
        raise AssertionError("timed out")

    loop.run_until_complete(wait())


def test_sieving_answers_at_accept_and_hands_the_rest_over(setup):
    loop, real, listener, sieve = setup
    port = real.getsockname()[1]
    loop.run_until_complete(listener.start())
    assert listener.server is not None and listener.raw is None
    assert ask(loop, port, "/shed") == [b"SERVED /shed"]  # not sieving: the sieve is not asked
    assert sieve.asked == 0
    listener.sieve_on(True)
    until(loop, lambda: listener.raw is not None and listener._restart is None)
    assert listener.server is None
    epfd = accept._loop_epoll[id(loop)]
    assert accept.epoll_events(epfd, listener.fd) & accept.EPOLLEXCLUSIVE  # one wakeup, as before
    assert ask(loop, port, "/shed", "/app", "/shed", "/app") == [b"SIEVED", b"SERVED /app", b"SIEVED", b"SERVED /app"]
    assert sieve.asked == 4
    # The gate pauses and resumes a sieving listener like any other.
    listener.stop()
    assert not listener.serving and listener.raw is None
    listener.resume()
    until(loop, lambda: listener.raw is not None)
    assert ask(loop, port, "/shed") == [b"SIEVED"]
    listener.sieve_on(False)
    until(loop, lambda: listener.server is not None and listener._restart is None)
    assert listener.raw is None
    assert ask(loop, port, "/shed") == [b"SERVED /shed"]
    assert sieve.asked == 5
    assert Served.seen.count(b"GET /app HTTP/1.1\r\n\r\n") == 2  # handed over with every byte


def test_without_room_connections_wait_in_the_kernel_queue_and_the_loop_does_not_spin(setup, monkeypatch):
    loop, real, listener, sieve = setup
    port = real.getsockname()[1]
    loop.run_until_complete(listener.start())
    listener.sieve_on(True)
    until(loop, lambda: listener.raw is not None and listener._epoll is not None)
    epfd = accept._loop_epoll[id(loop)]
    sieve.open = False
    waiting = sent(port, "/app")
    until(loop, lambda: listener._held)
    assert accept.epoll_events(epfd, listener.fd) is None  # out of the poll: a readable queue wakes nothing
    asked = sieve.asked
    checks = []
    fifth = loop.create_future()
    room = sieve.room

    def counted_room():
        checks.append(loop.time())
        if len(checks) == 5:
            fifth.set_result(None)
        return room()

    monkeypatch.setattr(sieve, "room", counted_room)
    loop.run_until_complete(asyncio.wait_for(fifth, 5))
    assert sieve.asked == asked  # nothing taken while there is no room
    # Looked for room on a timer (ROOM_POLL, 1 ms), not in a busy loop: the
    # four intervals cannot be shorter than the timer (with the clock's ms rounding).
    assert checks[-1] - checks[0] >= 0.002, checks
    sieve.open = True
    answers = loop.run_until_complete(answer(loop, waiting))
    assert answers == b"SERVED /app"
    assert not listener._held and accept.epoll_events(epfd, listener.fd) & accept.EPOLLEXCLUSIVE  # back, exclusive


def test_a_listener_stopped_while_held_is_not_put_back(setup):
    loop, real, listener, sieve = setup
    port = real.getsockname()[1]
    loop.run_until_complete(listener.start())
    listener.sieve_on(True)
    until(loop, lambda: listener.raw is not None and listener._epoll is not None)
    sieve.open = False
    client = sent(port, "/app")
    until(loop, lambda: listener._held)
    raw = listener.raw
    listener.stop()
    sieve.open = True
    listener._unhold(raw)  # the timer that was due: it finds the listener stopped
    assert not listener.serving and not listener._held and listener._epoll is None
    client.close()


def test_a_stopped_listener_does_not_start_when_the_sieve_turns_on_or_off(setup):
    loop, real, listener, sieve = setup

    async def scenario():
        await listener.start()
        listener.stop()  # the gate paused it, or the drain began
        listener.sieve_on(True)
        listener.sieve_on(False)
        listener.sieve_on(True)
        assert not listener.serving and listener._restart is None  # nothing queued to start it

    loop.run_until_complete(scenario())


def test_a_resume_pending_when_the_listener_stops_does_not_start_it(setup):
    loop, real, listener, sieve = setup

    async def scenario():
        await listener.start()
        listener.sieve_on(True)  # stop, then a resume() task queued
        task = listener._restart
        assert task is not None
        listener.stop()  # draining before that task ran
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled() and not listener.serving

    loop.run_until_complete(scenario())


def test_a_listener_without_a_sieve_ignores_the_watch(setup):
    loop, real, _, _ = setup
    plain = Listener(loop, real, Served, 64, exclusive=False)  # TLS, or HTTP/2 only: no sieve

    async def scenario():
        await plain.start()
        server = plain.server
        plain.sieve_on(True)
        assert plain.server is server and not plain.sieving and plain._restart is None
        plain.stop()

    loop.run_until_complete(scenario())
