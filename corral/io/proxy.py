"""PROXY protocol connections: read the header, then hand over to what comes next.

With ``--proxy-protocol v1|v2|auto`` the worker accepts every connection as a
``ProxyConnection`` (``ProxyPolicy.connection``). It feeds the first bytes to
``proto.proxy.ProxyParser`` and then hands the transport over
(``io/switch.py``) to the next phase, ``ProxyPolicy.next``: the TLS
handshake with ``--ssl-certfile``, else ``H1Connection`` (which, with
``--http auto``, looks for the HTTP/2 preface itself) or ``H2Connection``
(``--http 2``). The client, server and scheme the header named travel with
the transport, and the next phase gets the bytes that followed the header.

Who must send what:

* a peer in ``--proxy-allow-from`` (a UNIX socket peer always is) must send
  a header of the configured version; in ``auto`` mode v1, v2 or none;
* any other peer must not: its connection is served as plain HTTP unless it
  begins with a PROXY header, which would be a spoofing attempt.

A missing, malformed, oversized or unwanted header closes the connection
(lingering half-close, nothing written: the peer is not speaking HTTP) with
one log line. The header must arrive within ``--timeout-header``: the
connection sits in ``state.connections`` with ``head_since`` set, so the
worker's sweep times it out like a request head, and graceful shutdown
drains it like one.
"""

from __future__ import annotations

import asyncio
import logging

from ..proto.forwarded import TrustedPeers
from ..proto.proxy import ProxyHeaderError, ProxyParser
from .contract import settle_closing
from .switch import switch
from .transport import address, half_close, peer_name

log = logging.getLogger("corral.error")

VERSIONS = {"v1": (1,), "v2": (2,), "auto": (1, 2)}


class ProxyPolicy:
    """What every connection of a worker shares: the mode and the allowed peers."""

    def __init__(self, state, next_phase) -> None:
        config = state.config
        self.state = state
        self.next = next_phase  # factory of the protocol after the header (TLS, HTTP/1.1 or HTTP/2)
        self.versions = VERSIONS[config.proxy_protocol]
        self.required = config.proxy_protocol != "auto"
        self.allowed = TrustedPeers(config.proxy_allow_from)

    def connection(self) -> "ProxyConnection":
        """The protocol factory for the worker's listeners."""
        return ProxyConnection(self)


class ProxyConnection(asyncio.Protocol):
    # The attributes ServerState.sweep and the worker's shutdown read on
    # every connection of state.connections.
    __slots__ = (
        "policy",
        "state",
        "transport",
        "client",
        "server",
        "scheme",
        "tls",
        "proxy",
        "allowed",
        "parser",
        "closing",
        "linger_since",
        "idle_since",
        "head_since",
        "write_since",
        "waiting_since",
        "cycle",
        "reading_paused",
        "upgrade",
        "write_left",
        "close_reason",
    )

    def __init__(self, policy: ProxyPolicy) -> None:
        self.policy = policy
        self.state = policy.state
        self.transport = None
        self.client = None  # the peer, until the header names the client
        self.server = None
        self.scheme = None  # https when the header says the client spoke TLS to the proxy
        self.tls = None
        self.proxy = None
        self.allowed = False
        self.parser: ProxyParser | None = None
        self.closing = False
        self.linger_since = 0.0
        self.idle_since = 0.0
        self.head_since = 0.0
        self.write_since = 0.0
        self.waiting_since = 0.0
        self.cycle = None
        self.reading_paused = False
        self.upgrade = None
        self.write_left = 0
        self.close_reason = "normal"  # for metrics: io/metrics.py CLOSE_REASONS

    def connection_made(self, transport) -> None:
        self.transport = transport
        state = self.state
        state.connection_opened(self)
        self.head_since = state.now or 1e-9
        peer = self.client = address(transport.get_extra_info("peername"))
        self.server = address(transport.get_extra_info("sockname"))
        policy = self.policy
        self.allowed = allowed = peer is None or peer[0] in policy.allowed
        if allowed:
            self.parser = ProxyParser(policy.versions, policy.required)
        else:
            self.parser = ProxyParser((1, 2), required=False)  # only to spot one sent anyway

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering: discard
        try:
            result = self.parser.feed(data)
        except ProxyHeaderError as exc:
            if self.allowed:
                self._refuse(exc.detail)
            else:
                self._refuse("PROXY header from a peer not in --proxy-allow-from")
            return
        if result is None:
            return
        info, rest = result
        if info is not None and not self.allowed:
            self._refuse("PROXY header from a peer not in --proxy-allow-from")
            return
        self._hand_over(info, rest)

    def eof_received(self):
        if not self.closing:
            if self.parser.buffer:
                log.warning("%s: closed before its PROXY header was complete", peer_name(self.client))
            self.closing = True
        self.transport.close()
        return False

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.state.connection_closed(self)

    def _hand_over(self, info, rest: bytes) -> None:
        if info is not None:
            if info.client is not None:
                self.client = info.client
                self.server = info.server
            if info.tls is not None:
                self.scheme = "https"  # the client spoke TLS to the proxy
            self.proxy = info
        self.closing = True
        switch(self, self.policy.next(), self.transport, rest)

    # -- closing (also called by the sweep and the worker's shutdown) ------

    def _refuse(self, detail: str) -> None:
        log.warning("%s: %s; closing the connection", peer_name(self.client), detail)
        self.state.counters["bad_requests"] += 1
        self.close_reason = "bad_request"
        self.close()

    def timed_out(self, status: int, detail: str) -> None:
        log.warning("%s: no PROXY header within --timeout-header; closing the connection", peer_name(self.client))
        self.state.counters["timeouts"] += 1
        self.close()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.linger_since = self.state.now
        half_close(self.transport)

    def close_idle(self) -> None:
        """Never idle: waiting for a header is like a request head in progress."""

    # -- the connection contract (io/contract.py) ------------------------------

    @property
    def phase(self) -> str:
        return "closing" if self.closing else "head"

    def tick(self, now: float, timeouts) -> None:
        if self.closing:
            settle_closing(self, now, timeouts.write)
        elif now - self.head_since >= timeouts.header:
            self.close_reason = "header_timeout"
            self.timed_out(408, "PROXY header timeout")

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
