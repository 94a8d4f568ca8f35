"""Listening sockets, bound once by the master and inherited by every worker.

Sources: each ``--bind`` (repeatable: ``HOST:PORT``, ``[IPv6]:PORT``,
``unix:PATH``, ``fd://N``), the shorthands ``--uds`` (with ``--uds-mode``)
and ``--fd``, else ``--host``/``--port``; systemd socket activation
(``LISTEN_FDS``/``LISTEN_PID``) wins over all of them. Every worker serves
every listener. With ``--accept reuseport`` the master makes one
SO_REUSEPORT socket per worker slot for each TCP listener and keeps them
all open, so a worker that exits never takes its socket's queue with it.

Stopping releases the port at once (``refuse_new``): a TCP socket corral
created gets a socket filter that drops every packet, so no new connection
can complete its handshake and join the accept queue; a UNIX socket file is
unlinked. The workers then accept what is already queued and close their
copies; the last close releases the port, and new connections are refused.
Inherited sockets (``--fd``, systemd) belong to their owner and are left
as they are: their queue keeps filling for the owner's next server.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import stat
import struct

log = logging.getLogger("corral.error")

SD_LISTEN_FDS_START = 3
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
# Classic BPF, one instruction: BPF_RET | BPF_K with 0 = keep 0 bytes (drop).
_DROP_ALL = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))


class BindError(Exception):
    pass


def clamp_backlog(backlog: int) -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as handle:
            somaxconn = int(handle.read())
    except (OSError, ValueError):
        return backlog
    if backlog > somaxconn:
        log.info("backlog %d clamped to net.core.somaxconn = %d", backlog, somaxconn)
        return somaxconn
    return backlog


def systemd_sockets(environ=os.environ) -> list[socket.socket]:
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    sockets = [socket.socket(fileno=SD_LISTEN_FDS_START + i) for i in range(count)]
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    return sockets


def _tcp(host: str, port: int, backlog: int, reuseport: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {f'[{host}]' if ':' in host else host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


def _unix(path: str, mode: int | None, backlog: int) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket file from a previous run
            else:
                raise BindError(f"cannot bind {path}: another server is listening there")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {path}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


def _inherited(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"--fd {fd}: {exc.strerror}") from None
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise BindError(f"--fd {fd} is not a listening socket")
    return sock


def drop_new_connections(sock: socket.socket) -> bool:
    """Attach a drop-all filter to a TCP listener: SYNs and handshake-completing
    ACKs are dropped, so nothing new joins its accept queue (already queued
    connections stay). Returns False where the kernel refuses it."""
    program = struct.pack("HP", 1, ctypes.addressof(_DROP_ALL))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
    except OSError as exc:
        log.warning("cannot stop new connections on %s before closing it: %s", sock.getsockname(), exc.strerror)
        return False
    return True


def listeners(config) -> list[tuple]:
    """What to listen on, in order: each ``--bind``, then ``--uds`` and
    ``--fd`` (each adds one); ``--host``/``--port`` when none is given."""
    from ..config import parse_bind

    specs = [parse_bind(text) for text in config.bind]
    for spec in (("unix", config.uds) if config.uds else None, ("fd", config.fd) if config.fd is not None else None):
        if spec is not None and spec not in specs:
            specs.append(spec)
    return specs or [("tcp", config.host, config.port)]


def _name(sock: socket.socket, scheme: str) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{address[0]}]:{address[1]}"
    return f"{scheme}://{address[0]}:{address[1]}"


class Sockets:
    """What the master listens on; ``for_slot(i)`` is what worker slot i serves.

    Every listener (``--bind``, repeatable) is served by every worker. In the
    shared mode each has one socket (one accept queue) for all workers. With
    ``--accept reuseport`` each TCP listener has one SO_REUSEPORT socket per
    worker slot (``per_slot[i]``, in listener order), while UNIX and
    inherited listeners stay shared (a UNIX socket cannot be bound twice)."""

    def __init__(self, config, handover: dict | None = None) -> None:
        self.config = config
        self.handover = handover  # USR2: the old master's sockets (supervisor/upgrade.py)
        self.backlog = clamp_backlog(config.backlog)
        self.reuseport = config.accept == "reuseport"
        self.shared: list[socket.socket] = []  # served by every worker, one queue each
        self.per_slot: dict[int, list[socket.socket]] = {}  # reuseport: slot -> its TCP sockets
        self.uds: dict[str, int] = {}  # path -> inode of each UNIX socket file corral made
        self.inherited: list[socket.socket] = []  # --fd, fd://N, systemd: their owner's (in shared)

    @property
    def owned(self) -> bool:
        """Whether corral created any of these sockets (else all are inherited)."""
        return any(sock not in self.inherited for sock in self.all())

    def bind(self) -> None:
        config = self.config
        if self.handover is not None:
            self._adopt(self.handover)
            return
        specs = listeners(config)
        activated = systemd_sockets()
        if activated:
            self.shared = activated
            self.inherited = list(activated)
            if config.bind or config.uds or config.fd is not None:
                log.info("systemd socket activation: serving its %d sockets; --bind/--uds/--fd are not used", len(activated))
            specs = []
        try:
            for spec in specs:
                if spec[0] == "tcp":
                    sock = _tcp(spec[1], spec[2], self.backlog, reuseport=self.reuseport)
                    if self.reuseport:
                        self.per_slot.setdefault(0, []).append(sock)
                    else:
                        self.shared.append(sock)
                elif spec[0] == "unix":
                    sock = _unix(spec[1], config.uds_mode, self.backlog)
                    self.shared.append(sock)
                    self.uds[spec[1]] = os.stat(spec[1]).st_ino
                else:
                    sock = _inherited(spec[1])
                    self.shared.append(sock)
                    self.inherited.append(sock)
        except BindError:
            self.close()
            raise
        if self.reuseport and not self.per_slot:
            log.warning("--accept reuseport needs a TCP listener; using one shared socket")
            self.reuseport = False
        elif self.reuseport and self.shared:
            log.info("--accept reuseport: one socket per worker for TCP listeners; %d UNIX or inherited ones shared",
                     len(self.shared))

    def _adopt(self, spec: dict) -> None:
        """USR2: take over the old master's sockets, as they were."""
        self.shared = [socket.socket(fileno=fd) for fd in spec["shared"]]
        slots = spec["slots"]
        self.per_slot = {int(slot): [socket.socket(fileno=fd) for fd in (fds if isinstance(fds, list) else [fds])]
                         for slot, fds in slots.items()}  # one fd per slot: from a corral of one listener
        self.reuseport = bool(self.per_slot)
        if "inherited" in spec:
            self.inherited = [sock for sock in self.shared if sock.fileno() in spec["inherited"]]
            self.uds = dict(spec["uds"])
        else:  # from a corral of one listener
            self.inherited = [] if spec.get("owned", True) else list(self.shared)
            self.uds = {spec["uds"]: spec["uds_inode"]} if spec.get("uds") else {}

    def handover_spec(self) -> dict:
        """USR2: what the new master needs to adopt these sockets (JSON-able)."""
        return {
            "shared": [sock.fileno() for sock in self.shared],
            "slots": {slot: [sock.fileno() for sock in socks] for slot, socks in self.per_slot.items()},
            "inherited": [sock.fileno() for sock in self.inherited],
            "uds": self.uds,
        }

    def for_slot(self, slot: int) -> list[socket.socket]:
        if not self.reuseport:
            return self.shared
        socks = self.per_slot.get(slot)
        if socks is None:
            socks = []
            try:
                for first in self.per_slot[0]:
                    host, port = first.getsockname()[:2]
                    socks.append(_tcp(host, port, self.backlog, reuseport=True))
            except BindError:
                for sock in socks:
                    sock.close()
                raise
            self.per_slot[slot] = socks
        return socks + self.shared

    def private(self, slot: int) -> list[socket.socket]:
        """The sockets slot ``slot`` alone serves (reuseport), so no other worker wakes for them."""
        return self.per_slot.get(slot, []) if self.reuseport else []

    def release_slot(self, slot: int) -> None:
        """reuseport: close a slot's sockets once no worker serves it (TTOU)."""
        if self.reuseport and slot != 0:
            for sock in self.per_slot.pop(slot, ()):
                sock.close()

    def all(self) -> list[socket.socket]:
        return self.shared + [sock for socks in self.per_slot.values() for sock in socks]

    def describe(self) -> str:
        scheme = "https" if self.config.ssl_certfile else "http"
        first = self.per_slot.get(0, [])
        return ", ".join(_name(sock, scheme) for sock in first + self.shared)

    def refuse_new(self) -> bool:
        """Stopping: let no new connection join the queues of the sockets
        corral created (see the module docstring), then close the master's
        copies; the workers accept what is queued and close theirs.
        Inherited sockets are left untouched; returns False if all are."""
        owned = [sock for sock in self.all() if sock not in self.inherited]
        if not owned:
            return False
        self._unlink_uds()
        for sock in owned:
            if sock.family != socket.AF_UNIX:
                drop_new_connections(sock)
        for sock in owned:
            sock.close()
        return True

    def _unlink_uds(self) -> None:
        """Remove our socket files, unless another server has bound that path since."""
        files, self.uds = self.uds, {}
        for path, inode in files.items():
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass

    def close(self) -> None:
        for sock in self.all():
            sock.close()
        self.shared, self.per_slot = [], {}
        self._unlink_uds()
