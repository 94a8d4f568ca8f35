"""The overload control's sieve (io/overload.py ``Overload.sieve``): at
accept, while the worker watches, a connection whose request waited past the
target gets the protocols' own 503 bytes and a graceful close (nothing left
unread, so no reset), before any protocol object exists; anything it cannot
answer that way stays untouched (peeked, not read) for the protocols. Real
TCP connections on 127.0.0.1: TCP_INFO is the kernel's."""

from __future__ import annotations

import asyncio
import socket

import pytest

from corral.config import Config
from corral.io.contract import busy_response
from corral.io.overload import Overload
from corral.io.state import ServerState


@pytest.fixture
def overload():
    loop = asyncio.new_event_loop()
    state = ServerState(Config(app="x:y", access_log=False), loop)
    control = state.overload = Overload(state, 0.1)
    control.watching = True
    control.due = loop.time() + 1.0  # the loop is not lagging: only the socket's clock speaks
    yield control
    loop.close()


@pytest.fixture
def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def connected(listening, payload: bytes):
    """A client that sent ``payload``, and the server's side of it, accepted
    once the bytes are there."""
    client = socket.create_connection(listening.getsockname())
    if payload:
        client.sendall(payload)
    conn, _ = listening.accept()
    if payload:  # wait until the bytes are in the server's receive queue (no fixed sleep)
        conn.settimeout(5)
        assert conn.recv(len(payload), socket.MSG_PEEK | socket.MSG_WAITALL) == payload
        conn.settimeout(None)
    return client, conn


def read_all(client) -> bytes:
    client.settimeout(5)
    data = b""
    while chunk := client.recv(65536):  # EOF, not a reset: ConnectionResetError would fail the test
        data += chunk
    return data


def test_a_request_that_waited_past_the_target_gets_the_busy_answer_at_once(overload, listening):
    overload.target = -1.0  # every request "waited past" it (the kernel counts whole milliseconds, 0 here)
    client, conn = connected(listening, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert overload.sieve(conn)
    assert conn.fileno() == -1  # closed by the sieve
    assert read_all(client) == busy_response(overload.state.extra_headers)
    counters = overload.state.counters
    assert counters["shed_queue_delay"] == 1 and counters["connections"] == 1 and overload.shed == 1
    assert busy_response(b"").startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nretry-after: 1\r\n" in busy_response(b"") and b"\r\nconnection: close\r\n" in busy_response(b"")
    client.close()


def test_a_request_within_the_target_is_left_to_the_protocols(overload, listening):
    payload = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    client, conn = connected(listening, payload)
    assert not overload.sieve(conn)  # waited well under 100 ms, the loop on time
    assert conn.recv(100, socket.MSG_DONTWAIT) == payload  # untouched
    assert overload.state.counters["shed_queue_delay"] == 0 and overload.shed == 0
    client.close()
    conn.close()


def test_a_lagging_loop_counts_as_waiting(overload, listening):
    overload.due = overload.loop.time() - 1.0  # its next probe a second overdue
    client, conn = connected(listening, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert overload.sieve(conn)
    assert read_all(client).startswith(b"HTTP/1.1 503 ")
    client.close()


@pytest.mark.parametrize("payload", [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",  # a body: not read here
    b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n",  # framed, whatever the length
    b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",  # its answer has no body
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 prior knowledge
    b"GET / HTTP/1.1\r\nHost: a\r\n",  # a head not all there yet
    b"",  # nothing yet
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 4096 + b"\r\n\r\n",  # more than it peeks: not all read here
])
def test_what_it_cannot_answer_whole_goes_to_the_protocols_unread(overload, listening, payload):
    overload.target = -1.0
    client, conn = connected(listening, payload)
    assert not overload.sieve(conn)
    if payload:
        assert conn.recv(8192, socket.MSG_DONTWAIT) == payload  # peeked only: the protocol reads it all
    else:
        with pytest.raises(BlockingIOError):
            conn.recv(100, socket.MSG_DONTWAIT)
    assert overload.state.counters["shed_queue_delay"] == 0 and overload.shed == 0
    client.close()
    conn.close()


def test_a_client_that_left_is_not_served_and_nothing_raises(overload, listening):
    overload.target = -1.0
    client, conn = connected(listening, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # a reset: the 503 may find the connection gone
    assert overload.sieve(conn)
    assert overload.state.counters["shed_queue_delay"] == 1


def test_the_answer_follows_the_date_header(overload, listening):
    overload.target = -1.0
    state = overload.state
    answers = []
    for extra in (b"date: one\r\n", b"date: two\r\n"):
        state.extra_headers = extra
        client, conn = connected(listening, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert overload.sieve(conn)
        answers.append(read_all(client))
        client.close()
    assert answers == [busy_response(b"date: one\r\n"), busy_response(b"date: two\r\n")]


def test_a_passed_connection_takes_room_only_with_a_whole_head_to_work_on(overload, listening):
    overload.limit = 2
    assert overload.room()
    idle, idle_conn = connected(listening, b"")  # connected, sends nothing yet
    slow, slow_conn = connected(listening, b"GET / HTTP/1.1\r\nHost: a\r\n")  # a slowloris: part of a head
    for conn in (idle_conn, slow_conn):
        assert not overload.sieve(conn)
    assert overload.passed == {} and overload.room()
    busy = [connected(listening, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") for _ in range(2)]
    for _, conn in busy:
        assert not overload.sieve(conn)
    assert set(overload.passed) == {conn.fileno() for _, conn in busy}
    assert not overload.room()  # two passed, not yet read: the in-flight limit reached
    overload.passed.pop(busy[0][1].fileno())  # its request admitted (``late``)
    assert overload.room()
    for client, conn in [(idle, idle_conn), (slow, slow_conn), *busy]:
        client.close()
        conn.close()


class Wire:
    """A transport as the protocols hold it: its socket through get_extra_info."""

    def __init__(self, sock):
        self.sock = sock

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None


def test_the_first_request_of_a_passed_connection_gets_the_grace(overload, listening, monkeypatch):
    """The sieve judged its wait in the kernel; at admission its socket's
    clock allows PASSED_GRACE times the target (a large one here, so the
    test does not race the clock), once; a connection not passed gets none."""
    from corral.io import overload as module

    monkeypatch.setattr(module, "PASSED_GRACE", 100.0)
    overload.target = 0.05
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    passed_client, passed = connected(listening, request)
    assert not overload.sieve(passed) and passed.fileno() in overload.passed
    other_client, other = connected(listening, request)
    deadline = overload.loop.time() + 10
    while min(overload.waited(passed), overload.waited(other)) <= 0.055:  # the kernel's clock, in ms
        assert overload.loop.time() < deadline
        passed_client.settimeout(0.01)
        try:
            passed_client.recv(1)  # a short blocking wait, not a fixed sleep
        except TimeoutError:
            pass
        overload.due = overload.loop.time() + 1.0  # the loop itself is not lagging
    assert not overload.late(Wire(passed))  # within the grace: admitted
    assert passed.fileno() not in overload.passed  # once
    assert overload.late(Wire(other))  # waited past the target, not passed: shed
    for sock in (passed_client, passed, other_client, other):
        sock.close()
