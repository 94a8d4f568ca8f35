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

from ..proto.h1 import error_response
from .switch import front_closed, front_opened, recount, switch
from .transport import address, half_close, peer_name

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
        if keyfile is None and not _holds_key(certfile):
            # Issue 20: was "not a matching PEM certificate and key ([SSL] PEM lib ...)".
            raise TLSConfigError(
                f"--ssl-certfile {certfile} holds no private key: give its key with --ssl-keyfile"
            ) from None
        if keyfile is not None and not _holds_key(keyfile):
            raise TLSConfigError(f"--ssl-keyfile {keyfile} holds no private key") from None
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


def _holds_key(path: str) -> bool:
    """Whether a PEM file has a private key block (of any kind); True when
    it cannot be read, so the other messages apply."""
    try:
        with open(path, "rb") as handle:
            return b"PRIVATE KEY-----" in handle.read()
    except OSError:
        return True


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
    """One accepted TCP connection (or one whose PROXY header was read) until
    its TLS handshake is done: a phase in ``state.handshakes``
    (``io/switch.py``).

    ``protocols`` maps an ALPN name (None: none negotiated) to a factory of
    the HTTP protocol that takes the connection over.

    uvloop starts reading a new connection only after ``connection_made``
    returns, so pausing there does nothing: the ClientHello may arrive here,
    as plain bytes. So the handshake starts on the first bytes: reading is
    paused (now it holds), ``start_tls`` puts the SSL layer in place, and
    the bytes already read are handed to it. ``start_tls`` is stepped by
    hand (no Task): its setup runs at once, the rest when its waiter is done.

    Every way it ends frees its slot exactly once: handed over
    (``switch``), or closed (``_end``, guarded by the phase) when the client
    leaves, the handshake fails or expires, or the SSL transport comes back
    already closed (an expired handshake that was aborted: uvloop then
    completes ``start_tls`` with a dead transport).

    First bytes that are an HTTP request line (plain HTTP sent to the TLS
    port) get nginx's answer: 400 "The plain HTTP request was sent to HTTPS
    port", then the close.
    """

    __slots__ = ("state", "info", "protocols", "transport", "client", "server", "scheme", "tls", "proxy", "buffer",
                 "eof", "coro", "phase", "started", "expired")

    def __init__(self, state, info: TLSInfo, protocols) -> None:
        self.state = state
        self.info = info
        self.protocols = protocols
        self.transport = None
        self.client = None
        self.server = None
        self.scheme = "https"
        self.tls = None  # the ASGI tls extension, once the handshake is done
        self.proxy = None  # proto.proxy.ProxyInfo when a PROXY header came first
        self.buffer: list[bytes] = []
        self.eof = False
        self.coro = None
        self.phase = "tcp"  # tcp -> tls (start_tls running) -> done; or tcp -> plain (400 sent) -> done
        self.started = 0.0
        self.expired = False

    # -- as the TCP protocol, until start_tls replaces it ------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client = address(transport.get_extra_info("peername"))
        self.server = address(transport.get_extra_info("sockname"))
        self.started = self.state.now
        front_opened(self.state, self)

    def _start(self, first: bytes) -> None:
        if first[:1] in _REQUEST_LINE_START:
            self._plain_http()
            return
        self.phase = "tls"
        transport = self.transport
        transport.pause_reading()
        self.coro = self.state.loop.start_tls(
            transport, self, self.info.context, server_side=True, ssl_handshake_timeout=self.info.timeout + 5.0
        )
        self._step(None)
        if self.coro is not None:
            # After start_tls's own connection_made and resume_reading (queued
            # by it just now), before the next read.
            self.state.loop.call_soon(self._feed, transport.get_protocol(), first)

    def _plain_http(self) -> None:
        """Issue 20: plain HTTP to the TLS port is answered, as nginx does."""
        self.phase = "plain"
        state = self.state
        state.counters["bad_requests"] += 1
        log.info("%s: plain HTTP sent to the TLS port; answered 400", peer_name(self.client))
        self.transport.write(error_response(400, PLAIN_HTTP, state.extra_headers))
        half_close(self.transport)  # what the client still sends is read and dropped; closed on its FIN

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
        if not self.expired and self.phase != "done":
            log.debug("%s: TLS handshake failed: %r", peer_name(self.client), exc)
        lost = isinstance(exc, (ConnectionResetError, BrokenPipeError))  # the client left
        self._end("normal" if lost else "bad_request")
        self.transport.abort()

    def _handshaken(self, ssl_transport) -> None:
        ssl_object = None
        if ssl_transport is not None and not ssl_transport.is_closing():
            ssl_object = ssl_transport.get_extra_info("ssl_object")
        if ssl_object is None or self.phase == "done":
            # Closed while the handshake ran (expired, or aborted by a stop):
            # uvloop returns the SSL transport of a connection that is gone.
            self._end("normal")
            if ssl_transport is not None:
                ssl_transport.abort()
            return
        self.phase = "done"
        try:
            factory = self.protocols.get(ssl_object.selected_alpn_protocol()) or self.protocols[None]
            self.tls = self.info.extension(ssl_object)
            if self.proxy is not None:
                self.proxy.own_tls = self.tls  # the tls extension when the header carried none
            data = b"".join(self.buffer)
            self.buffer.clear()
            switch(self, factory(), ssl_transport, data, self.eof)
        except Exception:  # noqa: BLE001 - a bug must not leak the slot
            log.exception("%s: handing the TLS connection over failed; closing it", peer_name(self.client))
            if not front_closed(self.state, self, "normal"):
                recount(self.state)  # left mid-switch: the gate sees the count as it is
            ssl_transport.abort()

    def _end(self, reason: str) -> None:
        """Closed, not handed over: the slot is freed and the close counted, once."""
        if self.phase == "done":
            return
        self.phase = "done"
        self.coro = None
        front_closed(self.state, self, "handshake_timeout" if self.expired else reason)

    def expire(self) -> None:
        """The sweep found the handshake over --timeout-handshake."""
        if self.phase == "done" or self.expired:
            return
        self.expired = True
        self.state.counters["timeouts"] += 1
        log.info("%s: TLS handshake not completed in %.1fs; closed", peer_name(self.client), self.info.timeout)
        if self.phase != "tls":
            self._end("handshake_timeout")
        # In "tls", start_tls ends once the transport is gone: _failed or _handshaken ends it.
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- both roles: TCP bytes before start_tls, then plaintext between the
    # handshake and the switch to the HTTP protocol ------------------------------

    def data_received(self, data: bytes) -> None:
        if self.phase == "tcp":
            self._start(bytes(data))
        elif self.phase == "tls":
            self.buffer.append(bytes(data))
        # "plain": the rest of the request is dropped

    def eof_received(self):
        if self.phase == "tls":
            self.eof = True
            return True
        return False  # closed before saying hello, or after the 400: close

    def connection_lost(self, exc) -> None:
        if self.phase != "tls":
            self._end("bad_request" if self.phase == "plain" else "normal")

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


# Issue 20: nginx's words for plain HTTP on a TLS port.
PLAIN_HTTP = "The plain HTTP request was sent to HTTPS port"
# A TLS record starts with its content type (22, handshake); a request line
# with an upper-case method letter.
_REQUEST_LINE_START = frozenset(bytes([c]) for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
