"""The worker's duties without a subprocess: the once-a-second tick and the
listener restart (issue 9, losses 3 and 4). A real loop, real sockets."""

import asyncio
import errno
import logging
import os
import socket

import pytest

from corral.config import Config
from corral.io.state import ServerState
from corral.worker import accept
from corral.worker.accept import Listener
from corral.worker.process import Worker


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_worker(loop):
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    worker = Worker(Config(app="x:y", access_log=False), [], write_end)
    worker.loop = loop
    worker.state = ServerState(worker.config, loop)
    return worker, read_end


class Boom:
    """A connection whose sweep raises (any bug in a timeout path)."""

    closing = False
    transport = None
    write_since = 0.0
    aborted = False

    def abort(self):
        self.aborted = True

    def tick(self, now, timeouts):
        raise RuntimeError("bug in a timeout path")


class Idle:
    """A keep-alive connection that has been idle for long (its tick closes it)."""

    closed = False

    def tick(self, now, timeouts):
        if now - 1e-9 >= timeouts.idle:
            self.close_idle()

    def close_idle(self):
        self.closed = True


def test_one_failing_duty_stops_neither_the_others_nor_the_next_tick(loop, caplog):
    worker, heartbeats = make_worker(loop)
    state = worker.state
    idle = Idle()
    state.connections.update({Boom(), idle})
    state.refresh = lambda: (_ for _ in ()).throw(RuntimeError("clock bug"))
    caplog.set_level(logging.ERROR, "corral.error")
    worker._tick()
    assert os.read(heartbeats, 100).startswith(b"hb ")  # the heartbeat still went out
    assert idle.closed  # the other connection's timeout still ran
    assert "clock bug" in caplog.text and "bug in a timeout path" in caplog.text
    # And the tick goes on: the next one is scheduled.
    assert any(handle._callback == worker._tick for handle in loop._scheduled)
    os.close(heartbeats)
    os.close(worker.channel_fd)


class FlakySocket:
    """A listening socket whose dup() fails (EMFILE) ``failures`` times."""

    def __init__(self, real, failures):
        self.real = real
        self.failures = failures

    def dup(self):
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real.dup()


def test_a_failed_listener_restart_is_logged_and_retried(loop, caplog, monkeypatch):
    monkeypatch.setattr(accept, "RESTART_RETRY", 0.01)
    real = socket.socket()
    real.bind(("127.0.0.1", 0))
    real.listen(8)
    listener = Listener(loop, FlakySocket(real, failures=2), asyncio.Protocol, 8, exclusive=False)
    caplog.set_level(logging.ERROR, "corral.error")

    async def scenario():
        listener.resume()
        for _ in range(500):
            if listener.serving:
                return
            await asyncio.sleep(0.005)

    loop.run_until_complete(scenario())
    assert listener.serving
    assert caplog.text.count("could not restart accepting") == 2
    assert "Too many open files" in caplog.text
    listener.stop()
    loop.run_until_complete(asyncio.sleep(0))
    real.close()


def test_a_listener_stopped_while_retrying_stays_stopped(loop, monkeypatch):
    monkeypatch.setattr(accept, "RESTART_RETRY", 0.01)
    real = socket.socket()
    real.bind(("127.0.0.1", 0))
    real.listen(8)
    retries = []
    retry = Listener._retry
    monkeypatch.setattr(Listener, "_retry", lambda self: (retries.append(1), retry(self)))
    listener = Listener(loop, FlakySocket(real, failures=1), asyncio.Protocol, 8, exclusive=False)
    listener.resume()
    loop.run_until_complete(asyncio.sleep(0))
    listener.stop()

    async def until_the_retry_ran():
        deadline = loop.time() + 5
        while not retries:
            assert loop.time() < deadline, "the retry never ran"
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # whatever it would have started

    loop.run_until_complete(until_the_retry_ran())
    assert not listener.serving and listener._restart is None
    real.close()


def test_the_loops_epoll_is_found_once_and_every_restart_is_exclusive(monkeypatch):
    """Issue 9, loss 7: the /proc scan for the loop's epoll (40 ms at 8k
    descriptors) runs only until the first start has found it (the loop
    registers the socket on its next poll); each restart after a pause
    re-registers the listener with EPOLLEXCLUSIVE in that same epoll, with
    no scan."""
    import uvloop

    scans = []
    real_scan = accept._epoll_fds
    monkeypatch.setattr(accept, "_epoll_fds", lambda: scans.append(1) or real_scan())
    loop = uvloop.new_event_loop()
    real = socket.socket()
    real.bind(("127.0.0.1", 0))
    real.listen(8)
    listener = Listener(loop, real, asyncio.Protocol, 8, exclusive=True)
    try:
        async def restart_and_check():
            await listener.start()
            first_start_scans = len(scans)
            seen = []
            for _ in range(5):
                epfd = accept._loop_epoll[id(loop)]
                events = accept.epoll_events(epfd, listener.fd)
                assert events is not None and events & accept.EPOLLEXCLUSIVE, (epfd, listener.fd, events)
                seen.append(epfd)
                listener.stop()
                await asyncio.sleep(0)
                listener.resume()
                while not listener.serving or listener._restart is not None:
                    await asyncio.sleep(0)
                await listener._exclusive()
            return seen, first_start_scans

        seen, first_start_scans = loop.run_until_complete(restart_and_check())
        assert len(set(seen)) == 1
        assert first_start_scans >= 1
        assert len(scans) == first_start_scans  # none for the five restarts
    finally:
        listener.stop()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        accept.forget_loop(loop)
        real.close()
