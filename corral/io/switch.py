"""One protocol switch: a connection's transport moves from one phase to the next.

A TCP connection goes through phases, each its own protocol object, as
nginx's ``ngx_http_init_connection`` and its successors do (and Thousand
Island's ``{:switch, ...}`` verb):

    accept -> [PROXY header] -> [TLS handshake] -> HTTP/1.1 | HTTP/2
              io/proxy.py       io/tls.py          io/h1.py   io/h2.py
                                                   HTTP/1.1 -> HTTP/2 (h2c preface, Upgrade: h2c)

Every hand-over goes through ``switch(old, new, transport, data)``, which
keeps these true by construction, whatever the path:

* **One slot, accept to close.** The accept gate and ``--limit-connections``
  count ``state.connections`` + ``state.upgraded`` + ``state.handshakes``.
  ``old`` leaves its set before ``new.connection_made`` joins one, with no
  gate call in between: the count a gate sees never changes in a switch.
* **Accepted once.** ``counters["connections"]`` (the metrics' ``accepted``)
  counts the transport when its first phase is made; ``switch`` takes the
  count back as the old phase leaves (``ServerState.hand_over``), and the
  next phase's ``connection_made`` counts it again.
* **Closed once.** Only the phase in place when the transport closes counts
  the close (``state.connection_closed``, or ``front_closed`` for a TLS
  handshake); the phase switched away from is never closed or lost.
* **The identity travels.** ``client``, ``server``, ``scheme``, ``tls`` and
  ``proxy`` (what a PROXY header named, what the TLS handshake gave) are
  copied from ``old`` onto ``new`` after its ``connection_made`` (which reads
  the transport's own addresses): an app behind PROXY, then TLS, then HTTP/2
  sees the client the proxy named.

A phase sets what it learnt on itself (``self.client = info.client``), then
calls ``switch``; ``new`` gets the bytes that followed and, if the client
already shut its side, the EOF.
"""

from __future__ import annotations

IDENTITY = ("client", "server", "scheme", "tls", "proxy")


def switch(old, new, transport, data=b"", eof: bool = False) -> None:
    """Hand ``transport`` from phase ``old`` (done with it) to protocol ``new``."""
    state = old.state
    # Out of the old phase's set: no close counted, no gate call; and the
    # accept uncounted, since new's connection_made counts it again.
    if old in state.handshakes:
        state.handshakes.discard(old)
        state.counters["connections"] -= 1
    else:
        state.hand_over(old)
    transport.set_protocol(new)
    new.connection_made(transport)  # joins its own set, counted once
    for name in IDENTITY:
        value = getattr(old, name, None)
        if value is not None:
            setattr(new, name, value)
    if data:
        new.data_received(data)
    if eof and new.eof_received() is not True:
        transport.close()


# -- the phases in front of HTTP (a TLS handshake): in state.handshakes ------


def front_opened(state, conn) -> None:
    """A TLS handshake begins on an accepted transport (fresh, or after a
    PROXY header): one slot and one accepted connection (switch() took back
    the PROXY phase's)."""
    state.counters["connections"] += 1
    state.handshake_started(conn)


def front_closed(state, conn, reason: str) -> bool:
    """The phase in front ends with its transport closed (not switched):
    frees its slot and counts the close, once (False if already done)."""
    if conn not in state.handshakes:
        return False
    if state.metrics is not None:
        state.metrics.closed[reason] += 1
    state.handshake_done(conn)
    return True


def recount(state) -> None:
    """After a switch that failed half-way: the gate sees the true count."""
    if state.gate is not None:
        state.gate.closed(len(state.connections) + len(state.upgraded) + len(state.handshakes))
