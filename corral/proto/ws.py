"""WebSocket (RFC 6455) with permessage-deflate (RFC 7692), without I/O.

Theory of operation
-------------------
The opening handshake arrives as an HTTP/1.1 request parsed by ``proto.h1``.
``check_request(headers)`` validates it (RFC 6455 §4.2.1) and negotiates
compression, returning a ``Handshake`` or raising ``HandshakeError`` carrying
the HTTP status to answer with (400, or 426 for a version we do not speak).
``accept_response`` builds the ``101 Switching Protocols`` head.

After that the connection is frames. ``Parser.feed(data)`` takes bytes as
they arrive and reports to a *sink*, in order:

* ``sink.on_message(data)`` for each complete data message: ``str`` for a
  text message (UTF-8 already validated), ``bytes`` for a binary one;
  fragments are joined and compressed messages inflated first;
* ``sink.on_ping(payload)`` / ``sink.on_pong(payload)`` for control frames,
  which may come between the fragments of a message;
* ``sink.on_close(code, reason)`` for the peer's Close frame (code 1005 when
  it carries none). The parser ignores everything after it.

Anything RFC 6455 or 7692 tells an endpoint to fail the connection for
raises ``ProtocolError`` carrying the close code to send: 1002 (protocol
error), 1007 (invalid UTF-8), 1009 (message larger than ``max_size``). After
that the parser ignores its input; the I/O layer sends the Close frame.

Frames we send are built by ``encode_message`` (data, compressed when the
extension was negotiated), ``encode_frame`` (control frames) and
``encode_close``. Server frames are never masked or fragmented.

Compression state is allocated lazily: an idle connection that negotiated
permessage-deflate holds no zlib stream until it first sends or receives a
compressed message. Our sending window is 2**12 bytes with memLevel 5
(about 32 KiB of zlib state instead of 256 KiB), and we ask clients that
allow it to compress with a 2**12 window too.

This module imports nothing of asyncio or sockets.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
import zlib

__all__ = [
    "ProtocolError",
    "HandshakeError",
    "Handshake",
    "Deflate",
    "Parser",
    "Compressor",
    "check_request",
    "accept_response",
    "accept_key",
    "negotiate_deflate",
    "encode_frame",
    "encode_message",
    "encode_close",
    "parse_close",
    "valid_close_code",
    "apply_mask",
    "OP_CONT",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
EMPTY_BLOCK = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: stripped from each message

# Our LZ77 window and zlib memLevel for compression (see module docstring).
SERVER_WINDOW_BITS = 12
CLIENT_WINDOW_BITS = 12
MEM_LEVEL = 5
COMPRESS_LEVEL = 6


class ProtocolError(Exception):
    """Fail the connection: send a Close frame with ``code``, then close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """Bad opening handshake: answer with ``status`` over HTTP, then close."""

    def __init__(self, status: int, detail: str, headers: bytes = b"") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers  # extra header lines for the error response


# -- masking ---------------------------------------------------------------


def _py_apply_mask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


try:  # the C version shipped with the websockets package: 20-70x faster
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - pure-Python fallback
    _c_apply_mask = None

apply_mask = _c_apply_mask or _py_apply_mask


# -- close codes -------------------------------------------------------------


def valid_close_code(code: int) -> bool:
    """Codes an endpoint may put in a Close frame (RFC 6455 §7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """A Close frame's payload -> (code, reason); 1005 when it has no code."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError(1002, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise ProtocolError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "invalid UTF-8 in close reason") from None
    return code, reason


# -- frames we send ------------------------------------------------------------


def _header(b0: int, length: int) -> bytes:
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return bytes((b0, 126)) + length.to_bytes(2, "big")
    return bytes((b0, 127)) + length.to_bytes(8, "big")


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final, unmasked frame (control frames, uncompressed data)."""
    return _header(0x80 | opcode, len(payload)) + payload


def encode_close(code: int | None = 1000, reason: str = "") -> bytes:
    """A Close frame; ``code=None`` sends one without a status code."""
    if code is None:
        return b"\x88\x00"
    data = reason.encode("utf-8")
    if len(data) > 123:  # control frames carry at most 125 bytes
        data = data[:123].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + data)


def encode_message(data, compressor: "Compressor | None" = None) -> bytes:
    """A whole data message in one frame: text for ``str``, binary for bytes."""
    if type(data) is str:
        b0 = 0x81
        data = data.encode("utf-8")
    else:
        b0 = 0x82
    if compressor is not None:
        data = compressor.compress(data)
        b0 |= 0x40
    length = len(data)
    if length < 126:
        return bytes((b0, length)) + data
    return _header(b0, length) + data


class Compressor:
    """Our side of permessage-deflate: one compressed message at a time."""

    __slots__ = ("wbits", "context_takeover", "_zobj")

    def __init__(self, wbits: int, context_takeover: bool) -> None:
        self.wbits = wbits
        self.context_takeover = context_takeover
        self._zobj = None  # created on first use

    def compress(self, data: bytes) -> bytes:
        zobj = self._zobj
        if zobj is None:
            zobj = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -self.wbits, MEM_LEVEL)
            if self.context_takeover:
                self._zobj = zobj
        out = zobj.compress(data) + zobj.flush(zlib.Z_SYNC_FLUSH)
        # A sync flush ends with the empty stored block 00 00 ff ff: drop it.
        return out[:-4]


# -- opening handshake ---------------------------------------------------------


class Deflate:
    """Negotiated permessage-deflate parameters (RFC 7692 §7.1)."""

    __slots__ = ("server_no_context_takeover", "client_no_context_takeover", "server_window_bits", "client_window_bits", "response")

    def __init__(self, server_no_context_takeover, client_no_context_takeover, server_window_bits, client_window_bits, response):
        self.server_no_context_takeover: bool = server_no_context_takeover
        self.client_no_context_takeover: bool = client_no_context_takeover
        self.server_window_bits: int = server_window_bits  # we compress with this window
        self.client_window_bits: int = client_window_bits  # we inflate with this window
        self.response: bytes = response  # the Sec-WebSocket-Extensions value we answer

    def compressor(self) -> Compressor:
        return Compressor(self.server_window_bits, not self.server_no_context_takeover)

    def __repr__(self) -> str:
        return f"<Deflate {self.response.decode('ascii')}>"


class Handshake:
    __slots__ = ("key", "subprotocols", "deflate")

    def __init__(self, key: bytes, subprotocols: list[str], deflate: Deflate | None) -> None:
        self.key = key
        self.subprotocols = subprotocols
        self.deflate = deflate


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip() for token in value.split(b",") if token.strip()]


def check_request(headers, *, deflate: bool = True, extended_connect: bool = False) -> Handshake:
    """Validate an upgrade request's headers (RFC 6455 §4.2.1).

    The caller has checked the method (GET), the HTTP version and
    ``Upgrade: websocket``; ``headers`` are (lower-case name, value) pairs.
    ``extended_connect``: an HTTP/2 CONNECT with ``:protocol websocket``
    (RFC 8441 §5): no Connection, Upgrade or Sec-WebSocket-Key; the version,
    subprotocols and extensions as in RFC 6455.
    """
    key = None
    version = None
    upgrade = False
    subprotocols: list[str] = []
    extensions: list[bytes] = []
    for name, value in headers:
        if name == b"connection":
            if not upgrade:
                upgrade = any(token.lower() == b"upgrade" for token in _tokens(value))
        elif name == b"sec-websocket-key":
            if key is not None:
                raise HandshakeError(400, "Multiple Sec-WebSocket-Key headers")
            key = value.strip()
        elif name == b"sec-websocket-version":
            if version is not None:
                raise HandshakeError(400, "Multiple Sec-WebSocket-Version headers")
            version = value.strip()
        elif name == b"sec-websocket-protocol":
            subprotocols += [token.decode("latin-1") for token in _tokens(value)]
        elif name == b"sec-websocket-extensions":
            extensions.append(value)
    if not upgrade and not extended_connect:
        raise HandshakeError(400, "WebSocket upgrade needs 'Connection: Upgrade'")
    if version is None:
        raise HandshakeError(400, "Missing Sec-WebSocket-Version header")
    if version != b"13":
        raise HandshakeError(426, "Unsupported WebSocket version", b"sec-websocket-version: 13\r\n")
    if extended_connect:
        negotiated = negotiate_deflate(extensions) if deflate and extensions else None
        return Handshake(None, subprotocols, negotiated)
    if key is None:
        raise HandshakeError(400, "Missing Sec-WebSocket-Key header")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "Invalid Sec-WebSocket-Key header")
    negotiated = negotiate_deflate(extensions) if deflate and extensions else None
    return Handshake(key, subprotocols, negotiated)


def _parse_offers(values: list[bytes]):
    """Sec-WebSocket-Extensions values -> [(name, [(param, value|None)])]."""
    offers = []
    for value in values:
        for offer in value.split(b","):
            items = offer.split(b";")
            name = items[0].strip().lower()
            if not name:
                continue
            params = []
            for item in items[1:]:
                key, eq, val = item.partition(b"=")
                key = key.strip().lower()
                if not key:
                    params = None
                    break
                if eq:
                    val = val.strip()
                    if len(val) >= 2 and val[:1] == b'"' and val[-1:] == b'"':
                        val = val[1:-1]
                    params.append((key, val))
                else:
                    params.append((key, None))
            if params is not None:
                offers.append((name, params))
    return offers


def _window_bits(value: bytes | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 2:
        raise ValueError(value)
    bits = int(value)
    if not 8 <= bits <= 15:
        raise ValueError(value)
    return bits


def negotiate_deflate(values: list[bytes]) -> Deflate | None:
    """Accept the first permessage-deflate offer we can honour (RFC 7692 §7)."""
    for name, params in _parse_offers(values):
        if name != b"permessage-deflate":
            continue
        seen = set()
        server_nct = client_nct = False
        server_bits: int | None = None
        client_bits: int | bool | None = None  # True: offered without a value
        try:
            for key, value in params:
                if key in seen:
                    raise ValueError("duplicate parameter")
                seen.add(key)
                if key == b"server_no_context_takeover":
                    if value is not None:
                        raise ValueError(key)
                    server_nct = True
                elif key == b"client_no_context_takeover":
                    if value is not None:
                        raise ValueError(key)
                    client_nct = True
                elif key == b"server_max_window_bits":
                    server_bits = _window_bits(value)
                elif key == b"client_max_window_bits":
                    client_bits = True if value is None else _window_bits(value)
                else:
                    raise ValueError(key)
        except ValueError:
            continue  # an offer we do not understand: try the next one
        if server_bits is not None and server_bits < 9:
            continue  # zlib cannot compress with a 256-byte window
        ours = min(server_bits or SERVER_WINDOW_BITS, SERVER_WINDOW_BITS)
        response = [b"permessage-deflate"]
        if server_nct:
            response.append(b"server_no_context_takeover")
        if client_nct:
            response.append(b"client_no_context_takeover")
        response.append(b"server_max_window_bits=%d" % ours)
        if client_bits is None:
            theirs = 15
        else:
            theirs = CLIENT_WINDOW_BITS if client_bits is True else min(client_bits, CLIENT_WINDOW_BITS)
            response.append(b"client_max_window_bits=%d" % theirs)
        # Inflating with a larger window than the peer's is always safe; zlib
        # has no 8-bit window.
        return Deflate(server_nct, client_nct, ours, max(theirs, 9), b"; ".join(response))
    return None


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_RESERVED_RESPONSE_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-accept", b"sec-websocket-extensions", b"upgrade", b"connection"}
)


def accept_fields(handshake: Handshake, subprotocol: str | None = None, headers=()) -> list:
    """The fields of a handshake's answer besides its status, for HTTP/1.1
    (``accept_response``) and HTTP/2 (RFC 8441: ``:status 200``) alike;
    ``headers`` come from the app.

    Raises ValueError for a subprotocol the client did not offer or a header
    that cannot be sent (bad name, CR/LF/NUL in a value, or one of the
    handshake's own headers).
    """
    fields = []
    if subprotocol is not None:
        if subprotocol not in handshake.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        fields.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    if handshake.deflate is not None:
        fields.append((b"sec-websocket-extensions", handshake.deflate.response))
    for name, value in headers:
        if type(name) is not bytes or type(value) is not bytes:
            raise ValueError("header names and values must be bytes")
        if not _TOKEN(name):
            raise ValueError(f"invalid header name {name!r}")
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            raise ValueError("header values must not contain CR, LF or NUL")
        if name.lower() in _RESERVED_RESPONSE_HEADERS:
            raise ValueError(f"header {name!r} is set by the server")
        fields.append((name, value))
    return fields


def accept_response(handshake: Handshake, subprotocol: str | None = None, headers=(), extra: bytes = b"") -> bytes:
    """The ``101 Switching Protocols`` head (see ``accept_fields``)."""
    parts = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ",
        accept_key(handshake.key),
        b"\r\n",
    ]
    for name, value in accept_fields(handshake, subprotocol, headers):
        parts += (name, b": ", value, b"\r\n")
    parts += (extra, b"\r\n")
    return b"".join(parts)


# -- incoming frames ---------------------------------------------------------

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Parser:
    """Client frames -> sink events; see the module docstring.

    Bytes are kept as received until a whole frame is there (a list of
    chunks joined once), so a large frame costs one copy, not one per read.
    """

    __slots__ = (
        "sink",
        "max_size",
        "deflate",
        "closed",
        "_chunks",
        "_buffered",
        "_need",
        "_opcode",
        "_size",
        "_parts",
        "_decoder",
        "_compressed",
        "_inflater",
    )

    def __init__(self, sink, *, max_size: int = 16 * 1024 * 1024, deflate: Deflate | None = None) -> None:
        self.sink = sink
        self.max_size = max_size
        self.deflate = deflate
        self.closed = False  # a Close frame arrived or the input was bad
        self._chunks: list[bytes] | None = None  # input not parsed yet
        self._buffered = 0
        self._need = 0
        self._opcode = 0  # of the fragmented message in progress, else 0
        self._size = 0  # its size so far (inflated)
        self._parts: list | None = None
        self._decoder = None  # incremental UTF-8 decoder of a fragmented text message
        self._compressed = False
        self._inflater = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed (an incomplete frame)."""
        return self._buffered if self._chunks is not None else 0

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        chunks = self._chunks
        if chunks is not None:
            chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._need:
                return
            data = b"".join(chunks)
            self._chunks = None
        try:
            self._parse(data)
        except ProtocolError:
            self.closed = True
            self._chunks = None
            raise

    def _parse(self, data: bytes) -> None:
        end = len(data)
        pos = 0
        while not self.closed:
            avail = end - pos
            if avail < 2:
                need = 2
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                head = 6
            elif length == 126:
                head = 8
                if avail < head:
                    need = head
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
            else:
                head = 14
                if avail < head:
                    need = head
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise ProtocolError(1002, "frame length with the most significant bit set")
            if b0 & 0x70 or b0 & 0x0F not in (1, 2) or not b1 & 0x80 or not b0 & 0x80 or self._opcode:
                self._check(b0, b1, length)  # the uncommon cases, validated in full
            elif length > self.max_size:
                raise ProtocolError(1009, f"message larger than {self.max_size} bytes")
            if avail < head + length:
                need = head + length
                break
            start = pos + head
            pos = start + length
            if length:
                payload = apply_mask(data[start:pos], data[start - 4 : start])
            else:
                payload = b""
            if b0 == 0x81:  # a whole text message, the common case
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(1007, "invalid UTF-8 in text message") from None
                self.sink.on_message(text)
            elif b0 == 0x82:
                self.sink.on_message(payload)
            else:
                self._frame(b0, payload)
        else:
            return
        if pos < end:
            rest = data[pos:] if pos else data
            self._chunks = [rest]
            self._buffered = len(rest)
            self._need = need

    def _check(self, b0: int, b1: int, length: int) -> None:
        """RFC 6455 §5.2-5.5 and RFC 7692 §6 checks on a frame header."""
        if not b1 & 0x80:
            raise ProtocolError(1002, "client frames must be masked")
        opcode = b0 & 0x0F
        rsv = b0 & 0x70
        if opcode >= 8:
            if opcode > OP_PONG:
                raise ProtocolError(1002, f"reserved opcode {opcode}")
            if rsv:
                raise ProtocolError(1002, "reserved bits set in a control frame")
            if not b0 & 0x80:
                raise ProtocolError(1002, "fragmented control frame")
            if length > 125:
                raise ProtocolError(1002, "control frame payload longer than 125 bytes")
            return
        if opcode > OP_BINARY:
            raise ProtocolError(1002, f"reserved opcode {opcode}")
        if rsv and (rsv != 0x40 or self.deflate is None or opcode == OP_CONT):
            raise ProtocolError(1002, "reserved bits set")
        if opcode == OP_CONT:
            if not self._opcode:
                raise ProtocolError(1002, "continuation frame without a message to continue")
        elif self._opcode:
            raise ProtocolError(1002, "new data frame inside a fragmented message")
        if self._size + length > self.max_size:
            raise ProtocolError(1009, f"message larger than {self.max_size} bytes")

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        sink = self.sink
        if opcode >= 8:
            if opcode == OP_PING:
                sink.on_ping(payload)
            elif opcode == OP_PONG:
                sink.on_pong(payload)
            else:
                code, reason = parse_close(payload)
                self.closed = True
                self._chunks = None
                sink.on_close(code, reason)
            return
        fin = b0 & 0x80
        if opcode:  # the first frame of a message
            self._compressed = compressed = bool(b0 & 0x40)
            if fin and not compressed:
                if opcode == OP_TEXT:
                    try:
                        payload = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(1007, "invalid UTF-8 in text message") from None
                sink.on_message(payload)
                return
            self._opcode = opcode
            self._size = 0
            self._parts = []
            self._decoder = _utf8_decoder() if opcode == OP_TEXT else None
        if self._compressed:
            payload = self._inflate(payload, fin)
        self._size += len(payload)
        if self._size > self.max_size:
            raise ProtocolError(1009, f"message larger than {self.max_size} bytes")
        decoder = self._decoder
        if decoder is not None:
            try:
                payload = decoder.decode(payload, bool(fin))
            except UnicodeDecodeError:
                raise ProtocolError(1007, "invalid UTF-8 in text message") from None
        parts = self._parts
        parts.append(payload)
        if not fin:
            return
        if decoder is not None:
            message = parts[0] if len(parts) == 1 else "".join(parts)
        else:
            message = parts[0] if len(parts) == 1 else b"".join(parts)
        self._opcode = 0
        self._parts = self._decoder = None
        sink.on_message(message)

    def _inflate(self, payload: bytes, fin) -> bytes:
        deflate = self.deflate
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-deflate.client_window_bits)
        if fin:
            payload += EMPTY_BLOCK
        room = self.max_size - self._size
        try:
            data = inflater.decompress(payload, room + 1)
        except zlib.error:
            raise ProtocolError(1002, "invalid compressed data") from None
        if len(data) > room:
            raise ProtocolError(1009, f"message larger than {self.max_size} bytes")
        if fin and deflate.client_no_context_takeover:
            self._inflater = None
        return data
