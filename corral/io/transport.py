"""Small transport helpers shared by the HTTP/1.1 and WebSocket connections."""

from __future__ import annotations


def half_close(transport) -> None:
    """Shut the write side once the buffer has flushed (input keeps being
    read, so a client's unread bytes never turn the close into a reset);
    close outright where the transport cannot."""
    if transport.can_write_eof():
        try:
            transport.write_eof()
            return
        except (OSError, RuntimeError):
            pass
    transport.close()


def address(info):
    """(host, port) from get_extra_info("peername"/"sockname"); None for UNIX sockets."""
    if isinstance(info, tuple) and len(info) >= 2:
        return (info[0], info[1])
    return None


def peer_name(client) -> str:
    if client is None:
        return "unix client"
    return f"{client[0]}:{client[1]}"
