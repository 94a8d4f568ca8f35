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
])
def test_what_it_cannot_answer_whole_goes_to_the_protocols_unread(overload, listening, payload):
    overload.target = -1.0
    client, conn = connected(listening, payload)
    assert not overload.sieve(conn)
    if payload:
        assert conn.recv(100, socket.MSG_DONTWAIT) == payload  # peeked only: the protocol reads it all
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
