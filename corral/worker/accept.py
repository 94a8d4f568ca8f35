"""Accepting in a worker: serve a listening socket, pause and resume, one wakeup per connection.

The listening sockets belong to the master; a worker serves a *dup* of each,
so stopping (drain, connection limit) closes only the worker's copy and never
the kernel queue.

Herd-free wakeups: all workers share one accept queue, so every worker's
event loop watches the same socket. Registered plainly, one connection wakes
every idle worker. ``EPOLLEXCLUSIVE`` wakes only one of them, but only when it
is set on the epoll instance the loop actually sleeps in (an exclusive entry
in an inner epoll that the loop's epoll watches does not stay exclusive).
So once the loop has registered the socket, ``Listener`` replaces that
registration in the loop's own epoll with an exclusive one (the loop's epoll
descriptor is found by a /proc scan once, then remembered). The loop never
touches it again until it stops watching the socket (closing the server
deletes it), so the swap holds for as long as the server runs.

Several listeners (``--bind``, repeatable): one ``Listener`` per socket, each
made exclusive on its own, and one ``AcceptGate`` pausing and resuming them
all together; a connection's path after the accept does not know which
listener it came from. A socket this worker alone serves (``--accept
reuseport``) is left as the loop registers it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket

log = logging.getLogger("corral.error")

EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 1 << 28)


def _epoll_fds() -> list[int]:
    fds = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return fds
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]":
                fds.append(int(name))
        except OSError:
            continue
    return fds


def epoll_events(epfd: int, fd: int) -> int | None:
    """The event mask ``fd`` is registered with in epoll ``epfd`` (from /proc), or None."""
    try:
        with open(f"/proc/self/fdinfo/{epfd}") as info:
            for line in info:
                if line.startswith("tfd:"):
                    fields = line.split()
                    if int(fields[1]) == fd:
                        return int(fields[3], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


# The epoll descriptor each loop sleeps in (by id(loop)), found once by
# scanning /proc/self/fd: that scan costs ~40 ms at 8k descriptors, and a
# listener restarts after every pause (up to every 100 ms when nearly full).
_loop_epoll: dict[int, int] = {}


def find_epoll(fd: int, loop=None) -> tuple[int, int] | None:
    """The epoll descriptor that watches ``fd`` (``loop``'s, once known)
    and the events it watches for; None if none does yet."""
    key = id(loop)
    epfd = _loop_epoll.get(key) if loop is not None else None
    if epfd is not None:
        events = epoll_events(epfd, fd)
        if events is not None:
            return epfd, events
        return None  # not registered yet (or the cache is stale: see Listener._exclusive)
    for epfd in _epoll_fds():
        events = epoll_events(epfd, fd)
        if events is None:
            continue
        if loop is not None:
            _loop_epoll[key] = epfd
        return epfd, events
    return None


def forget_loop(loop) -> None:
    """Scan again next time (the cached descriptor did not hold ``fd``)."""
    _loop_epoll.pop(id(loop), None)


def _swap(epfd: int, fd: int, events: int) -> bool:
    if events & EPOLLEXCLUSIVE:
        return True
    epoll = select.epoll.fromfd(os.dup(epfd))
    try:
        epoll.unregister(fd)
        epoll.register(fd, select.EPOLLIN | EPOLLEXCLUSIVE)
    finally:
        epoll.close()
    return True


class Listener:
    """One listening socket served by this worker.

    Two ways to accept: the loop's server (``create_server``), always; and,
    while the overload control watches and ``sieve`` is given (plain HTTP
    listeners), this class's own accept loop, which passes each new
    connection to ``sieve`` first (io/overload.py answers the late ones 503
    before any protocol object exists) and hands the rest to the protocols
    (``connect_accepted_socket``). Pausing, resuming and the exclusive
    wakeup work the same in both."""

    def __init__(self, loop, sock: socket.socket, protocol_factory, backlog: int, exclusive: bool, sieve=None) -> None:
        self.loop = loop
        self.sock = sock  # the master's socket (inherited); never closed here
        self.factory = protocol_factory
        self.backlog = backlog
        self.exclusive = exclusive
        self.server: asyncio.AbstractServer | None = None
        self.raw: socket.socket | None = None  # this worker's copy, accepted from here while sieving
        self.fd = -1
        self._busy = False  # create_server in progress
        self._restart: asyncio.Task | None = None  # resume()'s start, kept until done
        self.wanted = False
        self.sieve = sieve  # io/overload.Overload (room(), sieve(conn) -> answered), or None: this listener does not sieve
        self.sieving = False
        self._handing: set = set()  # hand-overs in progress (the loop keeps only weak references to tasks)
        self._epoll = None  # sieving: the loop's epoll (a duplicate descriptor), to hold the socket out of it
        self._held = False

    @property
    def serving(self) -> bool:
        return self.server is not None or self.raw is not None

    async def start(self) -> None:
        self.wanted = True
        if self.serving or self._busy:
            return
        if self.sieving:
            dup = self.raw = self.sock.dup()
            dup.setblocking(False)
            self.fd = dup.fileno()
            self.loop.add_reader(self.fd, self._accept)
            await self._registered(dup)
            return
        self._busy = True
        try:
            dup = self.sock.dup()
            dup.setblocking(False)
            server = await self.loop.create_server(self.factory, sock=dup, backlog=self.backlog)
        finally:
            self._busy = False
        if not self.wanted or self.sieving:  # stopped, or the sieve turned on, while starting
            server.close()
            if self.wanted:
                await self.start()
            return
        self.server = server
        self.fd = server.sockets[0].fileno()
        if self.exclusive:
            await self._exclusive()

    async def _exclusive(self) -> None:
        """The loop's server: make its wakeups exclusive once registered."""
        found = await self._registration(self.server)
        if found is not None:
            _swap(found[0], self.fd, found[1])

    async def _registered(self, raw) -> None:
        """Sieving: once the loop has registered ``raw``, make its wakeups
        exclusive (if shared) and keep a handle on the loop's epoll, so that
        ``_hold`` can take it out of the poll while there is no room, and put
        it back (two system calls, the loop's own registration untouched)."""
        found = await self._registration(raw)
        if found is not None:
            epfd, events = found
            if self.exclusive:
                _swap(epfd, self.fd, events)
            self._epoll = select.epoll.fromfd(os.dup(epfd))

    async def _registration(self, current) -> tuple[int, int] | None:
        """The loop's epoll and the events it watches ``self.fd`` for, once
        the loop has registered it (on its next poll); None if ``current``
        (the server or the raw socket) was replaced meanwhile, or never."""
        for attempt in range(100):
            if (self.server or self.raw) is not current:
                return None
            found = find_epoll(self.fd, self.loop)
            if found is not None:
                return found
            if attempt == 50:
                forget_loop(self.loop)  # a stale cached descriptor: scan again
            await asyncio.sleep(0)
        log.warning("the loop never registered fd %d: accept wakeups stay as the loop made them", self.fd)
        return None

    def _hold(self, raw) -> None:
        """No room: out of the loop's poll until there is (checked every
        ``ROOM_POLL`` seconds), so a readable queue does not spin the loop.
        The connections wait in the kernel's queue meanwhile, where another
        worker may take them."""
        if self._held or self._epoll is None:
            return
        try:
            self._epoll.unregister(self.fd)
        except OSError:
            return
        self._held = True
        self.loop.call_later(ROOM_POLL, self._unhold, raw)

    def _unhold(self, raw) -> None:
        if self.raw is not raw:  # stopped meanwhile: its descriptor is closed (the number may be reused)
            return
        if not self.sieve.room():
            self.loop.call_later(ROOM_POLL, self._unhold, raw)
            return
        self._held = False
        try:
            self._epoll.register(self.fd, select.EPOLLIN | (EPOLLEXCLUSIVE if self.exclusive else 0))
        except OSError as exc:
            log.warning("worker: cannot watch the listening socket again (%s); accepting as usual", exc)
            self.sieve_on(False)

    def stop(self) -> None:
        """Stop accepting (closes only this worker's copy of the socket)."""
        self.wanted = False
        if self._restart is not None:  # a resume() not started yet must not start after this
            self._restart.cancel()
            self._restart = None
        server, self.server = self.server, None
        if server is not None:
            server.close()
        raw, self.raw = self.raw, None
        if raw is not None:
            self.loop.remove_reader(raw.fileno())
            raw.close()
            self._held = False
            if self._epoll is not None:
                self._epoll.close()
                self._epoll = None

    def sieve_on(self, on: bool) -> None:
        """The overload control starts (True) or stops watching: accept
        through the sieve, or with the loop's server again."""
        if self.sieve is None or on == self.sieving:
            return
        self.sieving = on
        if self.serving:
            self.stop()
            self.resume()

    def _accept(self) -> None:
        """Readable while sieving: take what the queue holds, oldest first,
        while the sieve has room (a bounded batch per wakeup, so the loop's
        other work goes on). The sieve answers the connections that waited
        too long; the others go on to the protocols. Without room, the rest
        wait in the kernel's queue (another worker may take them), where
        they cost nothing, rather than inside this worker."""
        raw = self.raw
        sieve = self.sieve
        for _ in range(ACCEPT_BATCH):
            if self.raw is not raw:
                return
            if not sieve.room():
                self._hold(raw)
                return
            try:
                conn, _ = raw.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: back to the loop's server, which handles them
                log.warning("worker: accepting through the overload sieve: %s; accepting as usual", exc)
                self.sieve_on(False)
                return
            if sieve.sieve(conn):
                continue
            conn.setblocking(False)
            task = self.loop.create_task(self.loop.connect_accepted_socket(self.factory, conn))
            self._handing.add(task)
            task.add_done_callback(self._handed)

    def _handed(self, task) -> None:
        self._handing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a connection handed over by the sieve failed: %s", task.exception())

    def resume(self) -> None:
        """Start accepting again, from a callback (no await). A restart that
        fails (EMFILE on dup, ...) is logged and retried every
        ``RESTART_RETRY`` seconds for as long as the listener is wanted."""
        self.wanted = True
        if not self.serving and not self._busy and self._restart is None:
            self._restart = task = self.loop.create_task(self.start())
            task.add_done_callback(self._restarted)

    def _restarted(self, task) -> None:
        if self._restart is task:
            self._restart = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("could not restart accepting on %s: %s; retrying in %.1fs", _sock_name(self.sock), exc, RESTART_RETRY)
        self.loop.call_later(RESTART_RETRY, self._retry)

    def _retry(self) -> None:
        if self.wanted:
            self.resume()


def _sock_name(sock) -> str:
    try:
        return str(sock.getsockname())
    except (OSError, AttributeError):
        return "the listening socket"


# Connections accepted per wakeup while sieving, and how often a listener
# held out of the poll (no room) looks for room again.
ACCEPT_BATCH = 256
ROOM_POLL = 0.001
# A listener restart that failed is tried again after this long.
RESTART_RETRY = 1.0
FD_RESERVE = 32  # descriptors kept free for the app (files, database sockets, logs)
NEARLY_FULL_BACKOFF = 0.1


class AcceptGate:
    """When this worker accepts: below --limit-connections and below the
    descriptor limit. At 7/8 of the connection limit, and when other workers
    share the queue, it steps back for a moment so that less loaded workers
    take the new connections (nginx's ``accept_disabled``). Paused, the
    listener is out of the loop: nothing polls, nothing retries; excess
    connections wait in the kernel backlog or go to other workers."""

    def __init__(self, loop, listeners: list[Listener], limit: int, shared_with_others: bool, pid: int) -> None:
        self.loop = loop
        self.listeners = listeners
        self.pid = pid
        self.limit = limit or float("inf")
        self.soft = limit - limit // 8 if (limit and shared_with_others and limit >= 8) else self.limit
        self.fd_cap = _descriptor_cap()
        self.base_fds = _open_descriptors()
        self._recount_at = 0.0
        self.reason: str | None = None
        self._backoff = None
        self.draining = False

    def _capacity_reason(self, count: int) -> str | None:
        if count >= self.limit:
            return "connection limit"
        if self.base_fds + count + 1 >= self.fd_cap:
            return "file descriptor limit"
        if count >= self.soft:
            return "nearly full"
        return None

    def opened(self, count: int) -> None:
        if self.base_fds + count + FD_RESERVE >= self.fd_cap and self.loop.time() >= self._recount_at:
            # Close to the descriptor limit: count again what the app holds
            # (database pools, files), at most once a second.
            self._recount_at = self.loop.time() + 1.0
            self.base_fds = max(self.base_fds, _open_descriptors() - count)
        reason = self._capacity_reason(count)
        if reason is not None and self.reason is None:
            self._pause(reason, count)

    def closed(self, count: int) -> None:
        if self.reason is None or self.draining:
            return
        reason = self._capacity_reason(count)
        if reason is None:
            self._resume(count)
        elif reason == "nearly full" and self.reason != "nearly full":
            self.reason = reason
            self._schedule_backoff()

    def _pause(self, reason: str, count: int) -> None:
        self.reason = reason
        for listener in self.listeners:
            listener.stop()
        level = logging.DEBUG if reason == "nearly full" else logging.WARNING
        log.log(level, "worker %d: %s reached (%d connections): not accepting", self.pid, reason, count)
        if reason == "nearly full":
            self._schedule_backoff()
        elif reason == "file descriptor limit":
            # The app may have opened descriptors since: measure again.
            self.base_fds = _open_descriptors() - count

    def _schedule_backoff(self) -> None:
        if self._backoff is None:
            self._backoff = self.loop.call_later(NEARLY_FULL_BACKOFF, self._backoff_done)

    def _backoff_done(self) -> None:
        self._backoff = None
        if self.reason == "nearly full" and not self.draining:
            self._resume(None)

    def _resume(self, count) -> None:
        if self.reason not in (None, "nearly full"):
            log.warning("worker %d: accepting again", self.pid)
        self.reason = None
        for listener in self.listeners:
            listener.resume()

    def stop(self) -> None:
        """Draining: stop for good."""
        self.draining = True
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        for listener in self.listeners:
            listener.stop()


def _descriptor_cap() -> float:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):  # pragma: no cover
        return float("inf")
    if soft == resource.RLIM_INFINITY:
        return float("inf")
    return soft - FD_RESERVE


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover
        return 16
