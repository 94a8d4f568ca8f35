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
  requests in flight, every request goes
  through ``ServerState.admit`` for ``WATCH`` seconds after the last late
  probe (``ServerState.limit_concurrency`` is set to -1, so the one
  comparison the protocols already make sends them there).
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
* **Bound what is in flight.** Where work piles up inside the worker (an
  app that awaits, then computes), requests are read at once and their
  sojourn stays short while the loop's backlog of callbacks grows. While
  watching, an AIMD limit on the requests in flight, steered by the lag
  (times 0.9 per probe that finds the loop lagging, plus one per calm probe
  that finds the limit reached), sheds what would overfill the loop.
* The same check is made where WSGI requests wait for a thread
  (``interfaces/wsgi.py``): a request that waited past the target there is
  answered 503 by the thread instead of the app.

``--limit-queue-delay SECONDS`` is the target (0 turns the control off).
"""

from __future__ import annotations

import logging
import socket
import struct

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
DECREASE = 0.9  # the in-flight limit's factor per lagging probe while watching
WATCH = 1.0  # keep watching this long after the last late probe
TCP_INFO = getattr(socket, "TCP_INFO", 11)
_LAST_DATA_RECV = struct.Struct("=I")  # struct tcp_info: tcpi_last_data_recv, at byte 52
_INFO_SIZE = 56
_UNACKED = struct.Struct("=I")  # of a listening socket: its accept queue's length, at byte 24


class Overload:
    """One per worker: the lag probe, the watch and the sojourn check."""

    __slots__ = ("state", "loop", "target", "watching", "watch_until", "lag", "due", "handle", "shed", "episode",
                 "delays", "listeners", "backlog", "limit")

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
        self.episode = 0.0  # when this episode's first 503 was sent
        # Queue delays measured while watching, for the metrics' histogram
        # (with --metrics-bind): appended by ``waited``, folded once a second
        # by io/metrics.py.
        self.delays: list[float] = []
        self.listeners: list[socket.socket] = []  # TCP listening sockets (worker/process.py)
        self.backlog = 0  # connections in their accept queues at the last probe
        self.limit = float("inf")  # requests in flight allowed while watching (AIMD)

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
        lagging = lag > self.target / 2
        if backlog >= QUEUE_CROWD or (lagging and in_flight >= CROWD):
            self.watch_until = now + WATCH
            if not self.watching:
                self.watching = True
                self.limit = max(in_flight, CROWD)
                self.state.limit_concurrency = -1  # every request through ServerState.admit
        elif self.watching and now >= self.watch_until:
            self._unwatch()
            return
        if self.watching:
            # AIMD on the requests in flight, steered by the lag: fewer while
            # the loop lags (the work already taken in keeps it busy), one
            # more per calm probe.
            if lagging:
                self.limit = max(CROWD, self.limit * DECREASE)
            elif in_flight >= self.limit - 1:
                self.limit += 1

    def _unwatch(self) -> None:
        self.watching = False
        state = self.state
        state.limit_concurrency = state.concurrency_limit
        if self.shed:
            log.warning("worker %d: overload over: %d requests answered 503 (queue delay over %.0f ms) in %.1f s",
                        state.pid, self.shed, self.target * 1000, self.loop.time() - self.episode)
            self.shed = 0

    def waited(self, transport) -> float:
        """Seconds the connection's last bytes have waited, by the kernel's
        clock (TCP_INFO), or the loop's lag now if that is longer."""
        waited = 0.0
        if transport is not None:  # None: a request that waited behind its own connection
            try:
                info = transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, TCP_INFO, _INFO_SIZE)
                waited = _LAST_DATA_RECV.unpack_from(info, 52)[0] / 1000.0
            except (OSError, AttributeError, struct.error):
                pass
        # The loop's lag now (how overdue the next probe is) is how long any
        # request waits before the loop gets to it: where the work piles up
        # inside the worker (an app that awaits, then computes), the bytes
        # are read at once and the lag is the wait.
        late = self.loop.time() - self.due
        if late > waited:
            waited = late
        if self.state.metrics is not None:
            self.delays.append(waited)
        return waited

    def late(self, transport) -> bool:
        """While watching: whether this request is shed: it waited past the
        target, or the requests in flight are at the adaptive limit."""
        if self.waited(transport) <= self.target and (self.state.in_flight < self.limit or self.lag <= self.target / 2):
            return False  # the in-flight limit binds only while the loop lags
        if not self.shed:
            self.episode = self.loop.time()
            log.warning("worker %d: overloaded (loop lag %.0f ms): answering 503 to requests that waited over %.0f ms",
                        self.state.pid, self.lag * 1000, self.target * 1000)
        self.shed += 1
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
        self.state.counters["shed_queue_delay"] += 1
