"""TLS: the server context, and the handshake in front of each connection.

``build_context(config)`` turns the ``--ssl-*`` options into an
``ssl.SSLContext``. The master calls it once at start to validate the files
(a bad path or password exits 2 with one line); each worker calls it again
after the fork, so a reload (HUP) starts workers that read the certificate
files afresh: rotated certificates are served without a restart.

``TLSHandshake`` is the protocol a listener creates for each accepted TCP
connection when TLS is on. It counts as an open connection (toward
``--limit-connections``) from the accept, runs the handshake bounded by
``--timeout-handshake`` (a client that never completes it is closed), then
hands the encrypted transport to the HTTP protocol chosen by ALPN, with the
``tls`` scope extension computed once for the connection.

Data flow: TCP bytes -> uvloop's SSL protocol (the handshake, then records)
-> ``TLSHandshake`` (buffers anything that arrives before the switch) ->
``H1Connection`` (or HTTP/2) with ``scheme`` https and ``tls`` set.
"""

from __future__ import annotations

import logging
import ssl

from .transport import address, peer_name

log = logging.getLogger("corral.error")

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_MIN_VERSION = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# --timeout-handshake 0 (off): uvloop needs a finite bound.
_NO_TIMEOUT = 365 * 86400.0


class TLSConfigError(Exception):
    """A TLS option names a file that cannot be used; one line, exit 2."""


_ALPN = {"auto": ("h2", "http/1.1"), "1": ("http/1.1",), "2": ("h2",)}


def build_context(config) -> ssl.SSLContext | None:
    """The server context from the --ssl-* options, or None when TLS is off.
    ALPN offers what ``--http`` allows (h2 first)."""
    certfile = config.ssl_certfile
    if certfile and getattr(config, "proxy_protocol", "off") != "off":
        raise TLSConfigError("--proxy-protocol with --ssl-certfile is not supported: end TLS at the proxy, or use one of them")
    if not certfile:
        for name in ("ssl_keyfile", "ssl_ca_certs"):
            if getattr(config, name):
                raise TLSConfigError(f"--{name.replace('_', '-')} needs --ssl-certfile")
        if config.ssl_cert_reqs != "none":
            raise TLSConfigError("--ssl-cert-reqs needs --ssl-certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION[config.ssl_min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    password = config.ssl_keyfile_password

    def give_password() -> bytes:
        # Never let OpenSSL prompt on the terminal for a missing password.
        return (password or "").encode("utf-8")

    keyfile = config.ssl_keyfile or None
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is not None:
            _readable(option, path)
    try:
        context.load_cert_chain(certfile, keyfile, give_password)
    except ssl.SSLError as exc:
        if _encrypted(keyfile or certfile):
            what = "wrong --ssl-keyfile-password" if password else "the key is encrypted: give --ssl-keyfile-password"
        else:
            what = f"not a matching PEM certificate and key ({exc.reason or exc})"
        raise TLSConfigError(f"cannot load {certfile}{' with key ' + keyfile if keyfile else ''}: {what}") from None
    except ValueError as exc:  # password too long, etc.
        raise TLSConfigError(f"--ssl-keyfile-password: {exc}") from None
    context.verify_mode = _CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_ca_certs:
        _readable("--ssl-ca-certs", config.ssl_ca_certs)
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"--ssl-ca-certs: {config.ssl_ca_certs} holds no PEM CA certificate ({exc.reason})") from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise TLSConfigError(f"--ssl-cert-reqs {config.ssl_cert_reqs} needs --ssl-ca-certs")
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSConfigError(f"--ssl-ciphers: no cipher matches {config.ssl_ciphers!r}") from None
    context.set_alpn_protocols(list(_ALPN[getattr(config, "http", "1")]))
    return context


def _encrypted(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"ENCRYPTED" in handle.read()
    except OSError:
        return False


def _readable(option: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TLSConfigError(f"{option}: cannot read {path}: {exc.strerror}") from None


class TLSInfo:
    """What a worker's connections share: the context and the scope pieces
    that do not change per connection."""

    def __init__(self, context: ssl.SSLContext, config) -> None:
        self.context = context
        self.timeout = config.timeout_handshake or _NO_TIMEOUT
        self.server_cert = _first_pem(config.ssl_certfile)
        self.cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}

    def extension(self, ssl_object) -> dict:
        """The ASGI ``tls`` extension for one connection."""
        cipher = ssl_object.cipher()
        chain: list[str] = []
        name = None
        error = None
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            chain = _peer_chain(ssl_object) or [ssl.DER_cert_to_PEM_cert(der)]
            name = _rfc4514(ssl_object.getpeercert())
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": error,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version()),
            "cipher_suite": self.cipher_ids.get(cipher[0]) if cipher else None,
        }


def _first_pem(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    end = "-----END CERTIFICATE-----"
    start = text.find("-----BEGIN CERTIFICATE-----")
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    return text[start : stop + len(end)] + "\n"


def _peer_chain(ssl_object) -> list[str]:
    """The client's verified chain, leaf first (Python 3.13 API, or the same
    method on the private object of 3.10-3.12)."""
    getter = getattr(ssl_object, "get_verified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    if getter is None:
        return []
    try:
        chain = getter() or []
        out = []
        for cert in chain:
            if isinstance(cert, bytes):
                out.append(ssl.DER_cert_to_PEM_cert(cert))
            else:
                out.append(cert.public_bytes(ssl._ssl.ENCODING_PEM))  # type: ignore[attr-defined]
        return out
    except Exception:  # noqa: BLE001 - the leaf alone is still right
        return []


def _rfc4514(cert: dict | None) -> str | None:
    if not cert or "subject" not in cert:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC", "userId": "UID"}
    parts = []
    for rdn in reversed(cert["subject"]):
        parts.append("+".join(f"{short.get(key, key)}={value}" for key, value in rdn))
    return ",".join(parts)


class TLSHandshake:
    """One accepted TCP connection until its TLS handshake is done.

    ``protocols`` maps an ALPN name (None: none negotiated) to a factory of
    the HTTP protocol that takes the connection over.

    uvloop starts reading a new connection only after ``connection_made``
    returns, so pausing there does nothing: the ClientHello may arrive here,
    as plain bytes. So the handshake starts on the first bytes: reading is
    paused (now it holds), ``start_tls`` puts the SSL layer in place, and
    the bytes already read are handed to it. ``start_tls`` is stepped by
    hand (no Task): its setup runs at once, the rest when its waiter is done.
    """

    __slots__ = ("state", "tls", "protocols", "transport", "client", "buffer", "eof", "lost", "coro",
                 "phase", "started", "expired")

    def __init__(self, state, tls: TLSInfo, protocols) -> None:
        self.state = state
        self.tls = tls
        self.protocols = protocols
        self.transport = None
        self.client = None
        self.buffer: list[bytes] = []
        self.eof = False
        self.lost = False
        self.coro = None
        self.phase = "tcp"  # tcp -> tls (start_tls running) -> done
        self.started = 0.0
        self.expired = False

    # -- as the TCP protocol, until start_tls replaces it ------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client = address(transport.get_extra_info("peername"))
        self.started = self.state.now
        self.state.handshake_started(self)

    def _start(self, first: bytes) -> None:
        self.phase = "tls"
        transport = self.transport
        transport.pause_reading()
        self.coro = self.state.loop.start_tls(
            transport, self, self.tls.context, server_side=True, ssl_handshake_timeout=self.tls.timeout + 5.0
        )
        self._step(None)
        if self.coro is not None:
            # After start_tls's own connection_made and resume_reading (queued
            # by it just now), before the next read.
            self.state.loop.call_soon(self._feed, transport.get_protocol(), first)

    def _feed(self, ssl_protocol, data: bytes) -> None:
        view = memoryview(data)
        while view and self.coro is not None and not self.transport.is_closing():
            buffer = ssl_protocol.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            view = view[size:]
            ssl_protocol.buffer_updated(size)

    def _step(self, _future) -> None:
        try:
            waiter = self.coro.send(None)
        except StopIteration as done:
            self.coro = None
            self._handshaken(done.value)
            return
        except Exception as exc:  # noqa: BLE001 - bad client hello, reset, timeout
            self.coro = None
            self._failed(exc)
            return
        waiter.add_done_callback(self._step)

    def _failed(self, exc: BaseException) -> None:
        self.phase = "done"
        self.state.handshake_done(self)
        if not self.expired:
            log.debug("%s: TLS handshake failed: %r", peer_name(self.client), exc)
        self.transport.abort()

    def _handshaken(self, ssl_transport) -> None:
        state = self.state
        self.phase = "done"
        if self.lost or ssl_transport is None:
            state.handshake_done(self)
            return
        ssl_object = ssl_transport.get_extra_info("ssl_object")
        factory = self.protocols.get(ssl_object.selected_alpn_protocol()) or self.protocols[None]
        conn = factory()
        conn.scheme = "https"
        conn.tls = self.tls.extension(ssl_object)
        ssl_transport.set_protocol(conn)
        conn.connection_made(ssl_transport)
        state.handshake_done(self)  # after: the connection is counted by now
        for data in self.buffer:
            conn.data_received(data)
        self.buffer.clear()
        if self.eof and conn.eof_received() is not True:
            ssl_transport.close()

    def expire(self) -> None:
        """The sweep found the handshake over --timeout-handshake."""
        if self.phase == "done" or self.expired:
            return
        self.expired = True
        self.state.counters["timeouts"] += 1
        log.info("%s: TLS handshake not completed in %.1fs; closed", peer_name(self.client), self.tls.timeout)
        self.abort()
        if self.phase == "tcp":
            self.phase = "done"
            self.state.handshake_done(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- both roles: TCP bytes before start_tls, then plaintext between the
    # handshake and the switch to the HTTP protocol ------------------------------

    def data_received(self, data: bytes) -> None:
        if self.phase == "tcp":
            self._start(bytes(data))
        else:
            self.buffer.append(bytes(data))

    def eof_received(self):
        if self.phase == "tcp":
            return False  # closed before saying hello: close
        self.eof = True
        return True

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.phase == "tcp":
            self.phase = "done"
            self.state.handshake_done(self)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass
