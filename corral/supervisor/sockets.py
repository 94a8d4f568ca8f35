"""Listening sockets, bound once by the master and inherited by every worker.

Sources: TCP (``--host``/``--port``), a UNIX socket (``--uds``,
``--uds-mode``), an inherited descriptor (``--fd``) and systemd socket
activation (``LISTEN_FDS``/``LISTEN_PID``, which wins over the rest).
With ``--accept reuseport`` the master makes one SO_REUSEPORT socket per
worker slot and keeps them all open, so a worker that exits never takes its
socket's queue with it.

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
        raise BindError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
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
        raise BindError(f"cannot bind {host}:{port}: {exc.strerror}") from None
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


class Sockets:
    """What the master listens on; ``for_slot(i)`` is what worker slot i serves."""

    def __init__(self, config, handover: dict | None = None) -> None:
        self.config = config
        self.handover = handover  # USR2: the old master's sockets (supervisor/upgrade.py)
        self.backlog = clamp_backlog(config.backlog)
        self.reuseport = config.accept == "reuseport"
        self.shared: list[socket.socket] = []
        self.per_slot: dict[int, socket.socket] = {}
        self.uds_path: str | None = None
        self.uds_inode = 0
        self.owned = True  # False for --fd and systemd sockets: their owner's

    def bind(self) -> None:
        config = self.config
        if self.handover is not None:
            self._adopt(self.handover)
            return
        inherited = systemd_sockets()
        if inherited:
            self.shared = inherited
            self.owned = False
        elif config.fd is not None:
            self.shared = [_inherited(config.fd)]
            self.owned = False
        elif config.uds:
            self.shared = [_unix(config.uds, config.uds_mode, self.backlog)]
            self.uds_path = config.uds
            self.uds_inode = os.stat(config.uds).st_ino
        elif self.reuseport:
            first = _tcp(config.host, config.port, self.backlog, reuseport=True)
            self.per_slot[0] = first
        else:
            self.shared = [_tcp(config.host, config.port, self.backlog, reuseport=False)]
        if self.reuseport and not self.per_slot:
            log.warning("--accept reuseport needs a TCP --host/--port; using one shared socket")
            self.reuseport = False

    def _adopt(self, spec: dict) -> None:
        """USR2: take over the old master's sockets, as they were."""
        self.shared = [socket.socket(fileno=fd) for fd in spec["shared"]]
        self.per_slot = {slot: socket.socket(fileno=fd) for slot, fd in spec["slots"].items()}
        self.reuseport = bool(self.per_slot)
        self.owned = spec["owned"]
        self.uds_path = spec["uds"]
        self.uds_inode = spec["uds_inode"]

    def handover_spec(self) -> dict:
        """USR2: what the new master needs to adopt these sockets (JSON-able)."""
        return {
            "shared": [sock.fileno() for sock in self.shared],
            "slots": {slot: sock.fileno() for slot, sock in self.per_slot.items()},
            "owned": self.owned,
            "uds": self.uds_path,
            "uds_inode": self.uds_inode,
        }

    def for_slot(self, slot: int) -> list[socket.socket]:
        if not self.reuseport:
            return self.shared
        sock = self.per_slot.get(slot)
        if sock is None:
            host, port = self.per_slot[0].getsockname()[:2]
            sock = self.per_slot[slot] = _tcp(host, port, self.backlog, reuseport=True)
        return [sock]

    def release_slot(self, slot: int) -> None:
        """reuseport: close a slot's socket once no worker serves it (TTOU)."""
        if self.reuseport and slot != 0:
            sock = self.per_slot.pop(slot, None)
            if sock is not None:
                sock.close()

    def all(self) -> list[socket.socket]:
        return self.shared + list(self.per_slot.values())

    def describe(self) -> str:
        names = []
        scheme = "https" if self.config.ssl_certfile else "http"
        for sock in self.shared or self.per_slot.values():
            address = sock.getsockname()
            if sock.family == socket.AF_UNIX:
                names.append(f"unix:{address}")
            elif sock.family == socket.AF_INET6:
                names.append(f"{scheme}://[{address[0]}]:{address[1]}")
            else:
                names.append(f"{scheme}://{address[0]}:{address[1]}")
            if self.reuseport:
                break
        return ", ".join(names)

    def refuse_new(self) -> bool:
        """Stopping: let no new connection join the queues of the sockets
        corral created (see the module docstring), then close the master's
        copies; the workers accept what is queued and close theirs.
        Returns False for inherited sockets, which are left untouched."""
        if not self.owned:
            return False
        self._unlink_uds()
        for sock in self.all():
            if sock.family != socket.AF_UNIX:
                drop_new_connections(sock)
        for sock in self.all():
            sock.close()
        return True

    def _unlink_uds(self) -> None:
        """Remove our socket file, unless another server has bound that path since."""
        path, self.uds_path = self.uds_path, None
        if path:
            try:
                if os.stat(path).st_ino == self.uds_inode:
                    os.unlink(path)
            except OSError:
                pass

    def close(self) -> None:
        for sock in self.all():
            sock.close()
        self.shared, self.per_slot = [], {}
        self._unlink_uds()
