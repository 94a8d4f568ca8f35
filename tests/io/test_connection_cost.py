"""What a connection costs apart from its requests: no reference cycle left
once it is lost, and the HTTP/2 preface is looked for by the HTTP/1.1
connection itself (cleartext --http auto), with no protocol in front of it."""

import asyncio
import gc
import weakref

import pytest

from corral.config import Config
from corral.interfaces.asgi import ASGIHandler
from corral.io.h1 import PREFACE, H1Connection
from corral.io.state import ServerState

from test_close import Transport, hello


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def no_gc():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def connect(loop, prior_knowledge=None):
    state = ServerState(Config(app="x:y", access_log=False), loop)
    state.handler = ASGIHandler(hello, state).new_cycle
    state.h2c = prior_knowledge is not None
    state.h2c_prior_knowledge = prior_knowledge
    conn = H1Connection(state)
    transport = Transport()
    conn.connection_made(transport)
    return state, conn, transport


def feed(loop, conn, chunks):
    def run():
        for chunk in chunks:
            conn.data_received(chunk)

    loop.call_soon(run)
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.parametrize(
    "chunks",
    [
        [],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTT"],  # lost inside a head
        [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"],  # inside a body
    ],
)
def test_a_lost_connection_is_freed_by_reference_counting(loop, no_gc, chunks):
    state, conn, transport = connect(loop)
    feed(loop, conn, chunks)
    conn.connection_lost(None)
    loop.call_soon(loop.stop)
    loop.run_forever()  # whatever the loss scheduled
    freed = [weakref.ref(conn.parser), weakref.ref(conn.queue)]
    del conn
    assert [ref() for ref in freed] == [None, None]
    assert not state.connections
    state.stepper.close()


def test_data_after_the_connection_is_lost_is_ignored(loop):
    state, conn, transport = connect(loop)
    conn.connection_lost(None)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes == []


class PriorKnowledge:
    def __init__(self):
        self.calls = []

    def __call__(self, state, h1, data):
        self.calls.append(data)
        h1.connection_lost(None)  # as io/h2.py prior_knowledge: HTTP/2 takes the transport


@pytest.mark.parametrize(
    "chunks",
    [
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"P", b"UT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"],  # starts like the preface
        [b"PR", b"OPFIND / HTTP/1.1\r\nHost: x\r\n\r\n"],  # a prefix of it, then something else
    ],
)
def test_http11_is_not_taken_for_the_http2_preface(loop, chunks):
    prior_knowledge = PriorKnowledge()
    state, conn, transport = connect(loop, prior_knowledge)
    feed(loop, conn, chunks)
    assert prior_knowledge.calls == []
    assert transport.writes, "answered over HTTP/1.1"
    assert transport.writes[0].startswith(b"HTTP/1.1 200 ")
    assert conn.sniff is None
    state.stepper.close()


@pytest.mark.parametrize("split", [1, 3, len(PREFACE) - 1, len(PREFACE), len(PREFACE) + 3])
def test_the_http2_preface_hands_the_connection_over_whole(loop, split):
    # The bytes seen while it could not tell are handed over with the rest
    # of the read that told; what comes after goes to HTTP/2 (not here).
    prior_knowledge = PriorKnowledge()
    state, conn, transport = connect(loop, prior_knowledge)
    data = PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # preface, then an empty SETTINGS frame
    feed(loop, conn, [data[:split], data[split:]])
    assert prior_knowledge.calls == [data if split < len(PREFACE) else data[:split]]
    assert transport.writes == [] and not state.connections
    state.stepper.close()


def test_without_prior_knowledge_the_preface_is_http11(loop):
    # --http 1, TLS, the PROXY protocol: no sniffing, the parser answers 505.
    state, conn, transport = connect(loop)
    assert conn.sniff is None
    feed(loop, conn, [PREFACE])
    assert transport.writes[0].startswith(b"HTTP/1.1 505 ")
    state.stepper.close()
