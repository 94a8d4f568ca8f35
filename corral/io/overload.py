"""Overload control: serve about the capacity, answer the excess at once.

Under overload a server's queue (the kernel's accept queue, the sockets
waiting to be read, the WSGI threads' queue) grows until every request waits
longer than its client does, and the server spends its CPU on answers nobody
reads. This module keeps the wait bounded, with CoDel's idea (Nichols and
Jacobson, 2012; Facebook's "Fail at Scale", 2015): it is not the queue's
length that matters but how long requests sit in it.

* **Detect, for free.** A probe runs every ``PROBE`` seconds on the worker's
  loop and measures how late it runs: the loop's lag, which is how long a
  request that arrives now waits before the loop can read it. While the lag
  stays under half the target, nothing else happens, and a request costs
  nothing more (``ServerState.admit`` is not even called).
* **Watch.** Once connections crowd the kernel's accept queue (``QUEUE_CROWD``
  of them; the probe reads its length with one ``TCP_INFO`` on each
  listening socket), or the lag passes half the target with ``CROWD``
  requests in flight, every request goes through ``ServerState.admit``
  (``ServerState.limit_concurrency`` is set to -1, so the one comparison
  the protocols already make sends them there), until ``WATCH`` seconds
  after the last crowded probe: one that finds a crowd, or a 503 sent since
  the probe before (the sieve keeps the queue short; while it still answers
  503s the overload is not over).
* **Shed by sojourn.** While watching, a request whose bytes have waited
  longer than the target is answered 503 with ``Retry-After``, without
  calling the app. How long they waited is the kernel's word for it:
  ``TCP_INFO``'s ``tcpi_last_data_recv``, the milliseconds since the
  connection last received data, or the loop's lag if that is longer (the
  wait of work that piles up inside the worker). The
  requests that waited less are served; so the queue settles at about the
  target, the served requests wait about that long, and the excess gets its
  503 within about the target too. A client that has left is not served: its
  request waited longer than the target (it left because it waited), so it
  gets a 503 it will not read, and the app never runs for it.
* **Sieve at accept.** Answering a 503 through a protocol costs the whole
  setup of a connection (a transport, a protocol object, a parse: about
  70 us); at 8x the capacity that is most of the worker. So while watching,
  a plain-HTTP listener accepts by itself (``worker/accept.py``) and hands
  each new connection to ``sieve`` first: one that waited past the target
  in the kernel's queue, with one whole request and no body, gets the same
  503 bytes in a few system calls (about 25 us: read, write, a graceful
  close), before any protocol object exists. The others go on to the
  protocols, as many as there is ``room`` for: the requests in flight plus
  the connections passed but not yet read stay under the in-flight limit;
  the rest wait in the kernel's queue (out of the loop's poll meanwhile, so
  nothing spins), where waiting costs nothing and another worker may take
  them. A passed connection's first request is judged again by the
  protocols, with ``PASSED_GRACE`` times the target, since the sieve judged
  its wait in the kernel already.
* **Bound what is in flight.** Where work piles up inside the worker (an
  app that awaits, then computes), requests are read at once and their
  sojourn stays short while the loop's backlog of callbacks grows. While
  watching, requests past an adaptive limit on the requests in flight are
  shed; the limit is steered by the lag (times ``DECREASE`` per probe that
  finds the lag past ``LAGGING`` times the target, times ``INCREASE`` plus
  one per probe that finds the limit reached and the lag within ``CALM``
  times it).
* The same check is made where WSGI requests wait for a thread
  (``interfaces/wsgi.py``): a request that waited past the target there is
  answered 503 by the thread instead of the app.

``--limit-queue-delay SECONDS`` is the target (0 turns the control off).
"""

from __future__ import annotations

import logging
import re
import socket
import struct

from .contract import busy_response

log = logging.getLogger("corral.error")

PROBE = 0.025  # seconds between two lag probes
# Watching starts only with a crowd: this many requests in flight while the
# loop lags, or QUEUE_CROWD connections in the accept queue. A loop that
# lags with a few requests (a slow app, a machine busy elsewhere) is not
# overloaded by its clients, and shedding would not help it.
CROWD = 16
# ... and for the accept queue: a client opening 64 connections at once (a
# benchmark's start) is not overload; a queue this long is, for any app.
QUEUE_CROWD = 128
# While watching, the in-flight limit is multiplied by DECREASE at each probe
# that finds the loop's lag past LAGGING times the target, and by INCREASE
# (plus one) at each probe that finds the limit reached and the lag within
# CALM times the target.
DECREASE = 0.9
INCREASE = 1.05
LAGGING = 0.375
CALM = 0.2
# The first request of a connection the sieve passed may wait this many
# times the target (counted from its arrival) before the protocols shed it:
# the sieve judged its wait in the kernel, what follows is the worker's.
PASSED_GRACE = 1.5
WATCH = 1.0  # keep watching this long after the last late probe
TCP_INFO = getattr(socket, "TCP_INFO", 11)
_LAST_DATA_RECV = struct.Struct("=I")  # struct tcp_info: tcpi_last_data_recv, at byte 52
_INFO_SIZE = 56
_UNACKED = struct.Struct("=I")  # of a listening socket: its accept queue's length, at byte 24
# The sieve's look at a new connection's first bytes (MSG_PEEK leaves them
# for the protocols if it does not answer), and what it leaves to them.
_PEEK = 4096
_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT
_FRAMED = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:", re.IGNORECASE)


class Overload:
    """One per worker: the lag probe, the watch and the sojourn check."""

    __slots__ = ("state", "loop", "target", "watching", "watch_until", "lag", "due", "handle", "shed", "episode",
                 "delays", "listeners", "backlog", "limit", "on_watch", "_answer", "_answer_for", "sieved", "passed", "shedding")

    def __init__(self, state, target: float) -> None:
        self.state = state
        self.loop = state.loop
        self.target = target
        self.watching = False
        self.watch_until = 0.0
        self.lag = 0.0  # the last probe's
        self.due = 0.0
        self.handle = None
        self.shed = 0  # requests answered 503 in this episode
        self.sieved = 0  # ... of which at accept, by the sieve
        self.shedding = False  # a 503 since the last probe: still overloaded
        # Descriptors of the connections the sieve passed, until their first
        # request's admission (``late``); cleared when watching ends.
        self.passed: dict[int, float] = {}
        self.episode = 0.0  # when this episode's first 503 was sent
        # Queue delays measured while watching, for the metrics' histogram
        # (with --metrics-bind): appended by ``waited``, folded once a second
        # by io/metrics.py.
        self.delays: list[float] = []
        self.listeners: list[socket.socket] = []  # TCP listening sockets (worker/process.py)
        self.backlog = 0  # connections in their accept queues at the last probe
        self.limit = float("inf")  # requests in flight allowed while watching (AIMD)
        # Called with True when watching starts and False when it ends: the
        # worker turns its listeners' sieve on and off (worker/accept.py).
        self.on_watch = None
        self._answer = b""  # the sieve's 503, made again when the Date header changes
        self._answer_for = None

    def start(self) -> None:
        self.due = self.loop.time() + PROBE
        self.handle = self.loop.call_at(self.due, self._probe)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.watching:
            self._unwatch()

    def _probe(self) -> None:
        now = self.loop.time()
        self.lag = lag = now - self.due
        self.due = now + PROBE
        self.handle = self.loop.call_at(self.due, self._probe)
        backlog = 0
        for sock in self.listeners:
            try:
                backlog += _UNACKED.unpack_from(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 32), 24)[0]
            except (OSError, struct.error):
                pass
        self.backlog = backlog
        in_flight = self.state.in_flight
        passed = self.passed
        if passed:  # passed connections that never sent a request (or closed first) stop counting
            old = now - self.target
            for fd in [fd for fd, at in passed.items() if at < old]:
                del passed[fd]
        lagging = lag > self.target / 2
        # Crowded: a queue, a lagging loop with requests in flight, or a 503
        # since the last probe (the sieve keeps the queue short: while it
        # still has to answer 503s, the overload is not over).
        shedding, self.shedding = self.shedding, False
        if backlog >= QUEUE_CROWD or (lagging and in_flight >= CROWD) or shedding:
            self.watch_until = now + WATCH
            if not self.watching:
                self.watching = True
                self.limit = max(in_flight, CROWD)
                self.state.limit_concurrency = -1  # every request through ServerState.admit
                if self.on_watch is not None:
                    self.on_watch(True)
        elif self.watching and now >= self.watch_until:
            self._unwatch()
            return
        if self.watching:
            # AIMD on the requests in flight, steered by the lag: fewer while
            # the loop lags (the work already taken in keeps it busy), one
            # more per calm probe.
            if lag > self.target * LAGGING:
                self.limit = max(CROWD, self.limit * DECREASE)
            elif in_flight + len(passed) >= self.limit - 1 and lag <= self.target * CALM:
                self.limit = self.limit * INCREASE + 1

    def _unwatch(self) -> None:
        self.watching = False
        state = self.state
        state.limit_concurrency = state.concurrency_limit
        if self.on_watch is not None:
            self.on_watch(False)
        self.passed.clear()
        if self.shed:
            log.warning("worker %d: overload over: %d requests answered 503 (%d at accept; queue delay over %.0f ms) in %.1f s",
                        state.pid, self.shed, self.sieved, self.target * 1000, self.loop.time() - self.episode)
            self.shed = self.sieved = 0

    def waited(self, sock) -> float:
        """Seconds the connection's last bytes have waited, by the kernel's
        clock (TCP_INFO), or the loop's lag now if that is longer."""
        waited = 0.0
        if sock is not None:  # None: a request that waited behind its own connection
            try:
                waited = _LAST_DATA_RECV.unpack_from(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _INFO_SIZE), 52)[0] / 1000.0
            except (OSError, AttributeError, struct.error):
                pass
        # The loop's lag now (how overdue the next probe is) is how long any
        # request waits before the loop can get to it: where the work piles
        # up inside the worker (an app that awaits, then computes), the bytes
        # are read at once and the lag is the wait.
        late = self.loop.time() - self.due
        if late > waited:
            waited = late
        if self.state.metrics is not None:
            self.delays.append(waited)
        return waited

    def over(self, sock, target: float) -> bool:
        """While watching: whether a request on ``sock`` (None: it waited
        behind its own connection) is to be shed: it waited past ``target``,
        or the requests in flight are at the adaptive limit while the loop lags."""
        return self.waited(sock) > target or self.state.in_flight >= self.limit

    def late(self, transport) -> bool:
        """Admission, while watching: whether this request is answered 503
        (``over``); counted if so. The first request of a connection the
        sieve passed is not timed by its socket again: the sieve judged that
        wait already, and the time since is the worker's own queue, which the
        loop's lag and the in-flight limit judge."""
        sock = None if transport is None else transport.get_extra_info("socket")
        target = self.target
        if sock is not None and self.passed:
            fd = sock.fileno()
            if self.passed.pop(fd, None) is not None:
                target *= PASSED_GRACE
        if not self.over(sock, target):
            return False
        self._count()
        return True

    def _count(self) -> None:
        if not self.shed:
            self.episode = self.loop.time()
            log.warning("worker %d: overloaded (loop lag %.0f ms): answering 503 to requests that waited over %.0f ms",
                        self.state.pid, self.lag * 1000, self.target * 1000)
        self.shed += 1
        self.shedding = True

    def room(self) -> bool:
        """While sieving: whether the worker takes another connection from
        the kernel's queue now (the requests in flight and the connections
        passed but not yet read are under the in-flight limit)."""
        return self.state.in_flight + len(self.passed) < self.limit

    def sieve(self, conn) -> bool:
        """At accept, while watching (worker/accept.py): answer a connection
        that is ``over`` at once, before any protocol object exists for it,
        when its bytes are one whole request without a body: read them, write
        the 503 (the same bytes as the protocols' ``reject_busy``), close.
        The close is graceful (nothing is left unread) and costs a few system
        calls, a quarter of a connection made and parsed. Returns True if it
        answered; False hands ``conn`` to the protocols (which decide again),
        as for anything else: a request with a body, ``HEAD``, an HTTP/2
        preface, a head not all there yet, more than ``_PEEK`` bytes."""
        if not self.over(conn, self.target):
            # Passed on. It takes room only with a whole head to work on: a
            # client that has sent nothing, or part of a head, waits on itself
            # (the protocols' header timeout), and idle or slow connections
            # must not keep the others out.
            try:
                if b"\r\n\r\n" in conn.recv(_PEEK, _PEEK_FLAGS):
                    self.passed[conn.fileno()] = self.loop.time()
            except OSError:
                pass
            return False
        try:
            head = conn.recv(_PEEK + 1, _PEEK_FLAGS)
        except OSError:
            return False  # nothing received yet
        if (len(head) > _PEEK or not head.endswith(b"\r\n\r\n") or head.startswith((b"PRI ", b"HEAD "))
                or _FRAMED.search(head)):
            return False
        state = self.state
        extra = state.extra_headers
        if extra is not self._answer_for:
            self._answer_for = extra
            self._answer = busy_response(extra)
        try:
            conn.recv(len(head), socket.MSG_DONTWAIT)
            conn.send(self._answer, socket.MSG_DONTWAIT)
        except OSError:
            pass  # a client that left: it is not served either way
        self.passed.pop(conn.fileno(), None)  # a number a connection passed earlier had
        conn.close()
        counters = state.counters
        counters["connections"] += 1
        counters["shed_queue_delay"] += 1
        self._count()
        self.sieved += 1
        return True

    def late_for_thread(self, queued_at: float) -> bool:
        """From a WSGI thread, while watching: whether a request that waited
        for a thread since ``queued_at`` (the loop's clock) waited past the
        target. Reads only; the thread then calls ``shed_by_thread`` on the loop."""
        return self.loop.time() - queued_at > self.target

    def shed_by_thread(self) -> None:
        """On the loop: a WSGI thread answered 503 instead of the app."""
        if not self.shed:
            self.episode = self.loop.time()
            log.warning("worker %d: overloaded (WSGI threads busy): answering 503 to requests that waited over %.0f ms",
                        self.state.pid, self.target * 1000)
        self.shed += 1
        self.shedding = True
        self.state.counters["shed_queue_delay"] += 1
