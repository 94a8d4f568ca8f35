"""Accepting in a worker: serve a listening socket, pause and resume, one wakeup per connection.

The listening sockets belong to the master; a worker serves a *dup* of each,
so stopping (drain, connection limit) closes only the worker's copy and never
the kernel queue.

Herd-free wakeups: all workers share one accept queue, so every worker's
event loop watches the same socket. Registered plainly, one connection wakes
every idle worker. ``EPOLLEXCLUSIVE`` wakes only one of them, but only when it
is set on the epoll instance the loop actually sleeps in (an exclusive entry
in an inner epoll that the loop's epoll watches does not stay exclusive).
So once the loop has registered the socket, ``make_exclusive`` replaces that
registration in the loop's own epoll with an exclusive one. The loop never
touches it again until it stops watching the socket (closing the server
deletes it), so the swap holds for as long as the server runs.
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


def make_exclusive(fd: int) -> bool:
    """Re-register ``fd`` with EPOLLEXCLUSIVE in whichever epoll watches it.

    Returns False if no epoll watches it yet (call again later)."""
    for epfd in _epoll_fds():
        events = epoll_events(epfd, fd)
        if events is None:
            continue
        if events & EPOLLEXCLUSIVE:
            return True
        epoll = select.epoll.fromfd(os.dup(epfd))
        try:
            epoll.unregister(fd)
            epoll.register(fd, select.EPOLLIN | EPOLLEXCLUSIVE)
        finally:
            epoll.close()
        return True
    return False


class Listener:
    """One listening socket served by this worker."""

    def __init__(self, loop, sock: socket.socket, protocol_factory, backlog: int, exclusive: bool) -> None:
        self.loop = loop
        self.sock = sock  # the master's socket (inherited); never closed here
        self.factory = protocol_factory
        self.backlog = backlog
        self.exclusive = exclusive
        self.server: asyncio.AbstractServer | None = None
        self.fd = -1
        self._starting: asyncio.Task | None = None
        self.wanted = False

    @property
    def serving(self) -> bool:
        return self.server is not None

    async def start(self) -> None:
        self.wanted = True
        if self.server is not None:
            return
        dup = self.sock.dup()
        dup.setblocking(False)
        self.fd = dup.fileno()
        self.server = await self.loop.create_server(self.factory, sock=dup, backlog=self.backlog)
        if self.exclusive:
            await self._exclusive()

    async def _exclusive(self) -> None:
        # The loop registers the socket on its next poll; wait for it.
        for _ in range(100):
            if self.server is None:
                return
            if make_exclusive(self.fd):
                return
            await asyncio.sleep(0)
        log.warning("could not make accept wakeups exclusive on fd %d", self.fd)

    def stop(self) -> None:
        """Stop accepting (closes only this worker's copy of the socket)."""
        self.wanted = False
        server, self.server = self.server, None
        if server is not None:
            server.close()

    def resume(self) -> None:
        """Start accepting again, from a callback (no await)."""
        if self.server is None and (self._starting is None or self._starting.done()):
            self._starting = self.loop.create_task(self.start())
