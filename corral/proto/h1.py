"""HTTP/1.1 (RFC 9112) without I/O: request parsing on llhttp, response framing.

Theory of operation
-------------------
``RequestParser.feed(data)`` pushes bytes into llhttp (through httptools) and
reports what it found to a *sink*, in order:

* ``sink.on_request(request)`` once a request head is complete and valid;
* ``sink.on_body(request, chunk)`` for every piece of its body, de-chunked;
* ``sink.on_request_complete(request)`` when its body ends.

Pipelined requests simply repeat the cycle inside one ``feed``. Anything the
RFCs tell a server to reject raises ``ProtocolError`` carrying the status to
answer with; after that the parser is unusable and the connection must close.

Responses go the other way: ``encode_head`` turns an application's status and
headers into the bytes of a response head and decides the body framing once
(Content-Length, chunked, or close-delimited), ``encode_chunk`` frames a
piece of a chunked body, ``error_response`` builds the short plain-text
answer sent before closing a connection on bad input.

This module imports nothing of asyncio or sockets.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

import httptools

__all__ = [
    "ProtocolError",
    "Request",
    "RequestParser",
    "ResponseHead",
    "encode_head",
    "encode_chunk",
    "error_response",
    "LAST_CHUNK",
]


class ProtocolError(Exception):
    """Bad input: answer with ``status`` and close the connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Request:
    """One request head, plus the body bytes received and not yet consumed."""

    __slots__ = (
        "method",
        "target",
        "path",
        "raw_path",
        "query_string",
        "http_version",
        "headers",
        "keep_alive",
        "expect_continue",
        "upgrade",
        "forwarded",
        "body",
        "buffered",
        "complete",
    )

    def __init__(self, method, target, raw_path, query_string, http_version, headers, keep_alive):
        self.method: str = method
        self.target: bytes = target
        self.raw_path: bytes = raw_path
        # ``"%" in str``, not ``b"%" in bytes``: bytes.__contains__ first tries
        # its operand as an int, raising and clearing a TypeError (1.8k
        # instructions per request; bench/hotpath.py).
        path = raw_path.decode("latin-1")
        self.path: str = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape") if "%" in path else path
        self.query_string: bytes = query_string
        self.http_version: str = http_version
        self.headers: list[tuple[bytes, bytes]] = headers
        self.keep_alive: bool = keep_alive
        self.expect_continue = False
        self.upgrade: bytes | None = None  # lower-cased Upgrade token, e.g. b"websocket"
        # True when a forwarding field is present; io/ replaces it with the
        # resolved proto.forwarded.Identity, or None when not to be believed.
        self.forwarded = False
        self.body: list[bytes] = []
        self.buffered = 0
        self.complete = False

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target!r} HTTP/{self.http_version}>"


# llhttp errors for a version that is well formed but not ours: 505, not 400.
_UNSUPPORTED_VERSION_ERRORS = frozenset({"Invalid HTTP version", "Pause on PRI/Upgrade"})
_DATA_AFTER_CLOSE = "Data after `Connection: close`"


class _Trailers:
    """Where trailer fields of a chunked body go: counted against the header
    size limit, then dropped (RFC 9112 §7.1.2: they must not join the header
    list the app already holds)."""

    __slots__ = ("size", "limit")

    def __init__(self, limit: int) -> None:
        self.size = 0
        self.limit = limit

    def append(self, field) -> None:
        self.size += len(field[0]) + len(field[1]) + 4
        if self.size > self.limit:
            raise ProtocolError(431, "Request header fields too large")


def _check_transfer_coding(te: bytes) -> None:
    """RFC 9112 §6.1/§6.3: chunked must be the final coding (else 400); we
    decode no other coding (501). Checked before the request is reported."""
    codings = [coding.strip().lower() for coding in te.split(b",")]
    if codings[-1] != b"chunked":
        raise ProtocolError(400, "Transfer-Encoding must end with chunked")
    unsupported = [coding for coding in codings[:-1] if coding]
    if unsupported:
        raise ProtocolError(501, f"Transfer-Encoding {unsupported[0].decode('latin-1')} is not supported")


_SPECIAL_HEADERS = frozenset({
    b"host", b"connection", b"expect", b"transfer-encoding", b"upgrade", b"content-length",
    # forwarding fields: flagged here (request.forwarded), read by proto/forwarded.py
    b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
})
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_MULTIPLE_HOSTS = object()  # stands for the Host value when there was more than one
_NOT_CHECKED = object()  # no Host value checked yet

# RFC 9110 §7.2: Host = uri-host [ ":" port ]; reg-name, IPv4 or [IPv6].
_VALID_HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.vV]+\])(?::[0-9]*)?").fullmatch


# RFC 9110 §5.6.2 token, then SP: an extension method (RFC 9110 §9.1).
_EXTENSION_METHOD = re.compile(rb"(?:\r\n)*([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ").match
# The methods llhttp parses in an HTTP/1.x request (CONNECT is refused later).
_LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK BIND "
    b"REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE "
    b"MKCALENDAR LINK UNLINK SOURCE QUERY PRI".split()
)
_RTSP_METHOD = "Invalid method for HTTP/x.x request"  # an RTSP method on an HTTP request line


def _invalid_method(data: bytes) -> ProtocolError:
    """llhttp knows a fixed list of methods. A well-formed method it does
    not know is 501 (RFC 9110 §9.1), anything else 400. llhttp does not say
    where it stopped: a method is recognised when its request starts the feed
    (as clients send it); after other requests in the same feed it is 400."""
    match = _EXTENSION_METHOD(data)
    if match and match[1] not in _LLHTTP_METHODS:
        return ProtocolError(501, f"Method {match[1].decode('ascii')} is not implemented")
    return ProtocolError(400, "Invalid method")


def _other_version(version: str) -> str:
    """RFC 9110 §2.5: a higher minor version of HTTP/1 (1.2 ... 1.9) is
    served as HTTP/1.1. Any other major version (0.x, 2.x, 3.1, 9.9) is 505:
    issue 19 finding 16, 3.1 was served as 1.1."""
    if version[0] == "1":
        return "1.1"
    raise ProtocolError(505, f"HTTP/{version} is not supported")


def _other_method(method: bytes) -> str:
    """A method outside the common ones (llhttp has checked it is a token)."""
    if method == b"CONNECT":
        raise ProtocolError(501, "CONNECT is not supported")
    return method.decode("ascii")


class RequestParser:
    """Incremental request parser; see the module docstring for the sink contract.

    ``in_head`` is True while a request head has begun and is not complete.

    The hot path is one request head per ``feed``: per header, one lower(),
    one rstrip() and one set lookup. The header block is measured against
    its limit only when this head's bytes could exceed it, the Host value is
    validated once per distinct value, and the rarer fields (Expect,
    Transfer-Encoding, Upgrade, Content-Length) are looked at only when present.
    """

    def __init__(
        self, sink, *, limit_request_line: int = 8192, limit_header_size: int = 65536, limit_request_body: int = 0,
        h2c: bool = False,
    ) -> None:
        self._sink = sink
        self._h2c = h2c  # take an ``Upgrade: h2c`` request without a body (RFC 7540 3.2; deprecated by RFC 9113)
        self._limit_request_body = limit_request_body or float("inf")
        self._body_size = 0
        self._limit_request_line = limit_request_line
        self._limit_header_size = limit_header_size
        self._parser = self._new_parser()
        self._request: Request | None = None
        self.in_head = False
        self.data_after_close = False  # bytes came after a request that closes the connection
        self._head_bytes = 0  # bytes of earlier feeds that ended inside this head
        self._feed_bytes = 0  # bytes of the current feed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._trailers = _Trailers(limit_header_size)
        self._host = None  # the Host value, None, or _MULTIPLE_HOSTS
        self._valid_host = _NOT_CHECKED  # the last Host value that passed the check
        self._connection = False  # a Connection field was seen
        self._special = False  # a field of _SPECIAL_HEADERS other than Host or Connection was seen
        self._expect = False
        self._transfer_encoding: bytes | None = None
        self._upgrade: bytes | None = None
        self._content_length: bytes | None = None
        self._forwarded = False
        # The framing line(s) to replay into a fresh llhttp parser after an
        # Upgrade that is not taken (llhttp skips such a request's body).
        self._replay: bytes | None = None
        self._replaying = False
        self._head_tail = b""  # the last bytes of feeds that ended inside a head (_http09)
        # Between messages as a feed starts (no target read yet: at most a
        # method from the feed before), the first head of the feed begins
        # with it: on_headers_complete reads its version from the bytes
        # (``_line``) instead of asking llhttp, which formats a string (1 µs).
        self._fresh = True
        self._line = None
        self._at = 0

    def _new_parser(self):
        parser = httptools.HttpRequestParser(self)
        # HTTP/1.2 and up are served as HTTP/1.1 (RFC 9110 §2.5);
        # on_headers_complete answers 505 to 0.x, 2.0, 3.0 (_other_version).
        parser.set_dangerous_leniencies(lenient_version=True)
        return parser

    # -- public API --------------------------------------------------------

    def feed(self, data: bytes) -> int | None:
        """Parse ``data``. Returns None, or, after a request that upgrades the
        connection (WebSocket), the offset in ``data`` where the new protocol's
        bytes begin."""
        self._feed_bytes = len(data)
        self._line = data if self._fresh and not self.in_head and type(data) is bytes else None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            if self._replay is None:
                return self._upgraded(data, offset)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):
                raise cause from None
            raise
        except httptools.HttpParserInvalidMethodError:
            raise _invalid_method(data) from None
        except httptools.HttpParserInvalidURLError:
            raise ProtocolError(400, "Invalid request target") from None
        except httptools.HttpParserError as exc:
            detail = str(exc) or "Malformed request"
            if detail == _DATA_AFTER_CLOSE:
                # RFC 9112 §9.6: after a request that closes the connection
                # nothing more is processed; it is not an error either.
                self.data_after_close = True  # the connection lingers to drain it
                return None
            if detail == _RTSP_METHOD:
                raise ProtocolError(501, "Method not implemented") from None
            if detail in _UNSUPPORTED_VERSION_ERRORS:
                # A well-formed version line we do not speak (HTTP/2.0 preface, HTTP/3.0, ...).
                version = self._parser.get_http_version()
                raise ProtocolError(505, f"HTTP/{version} is not supported") from None
            raise ProtocolError(400, detail) from None
        else:
            if self.in_head:
                # llhttp buffers a header until it ends: bound what one head may
                # hold. Only this head's bytes count, not the requests and bodies
                # before it in the same feed.
                if self._head_bytes:  # the head began in an earlier feed: all of data is in it
                    self._head_bytes += len(data)
                else:
                    self._head_bytes = self._head_size_so_far(data)
                    self._head_tail = b""
                if self._head_bytes > self._limit_request_line + self._limit_header_size:
                    # A long request line is caught by on_url as llhttp streams it.
                    raise ProtocolError(431, "Request header fields too large")
                version = self._parser.get_http_version()
                if version[0] == "0":
                    self._http09(version, data)
            return None
        # An Upgrade we do not take: the request goes on as HTTP/1.1 (resumed
        # outside the except clause, which would chain a later error to it).
        return self._resume(data, offset)

    def _http09(self, version: str, data: bytes) -> None:
        """A request line that ended without a version (HTTP/0.9) has no
        header block after it: answer now rather than at the header timeout.
        llhttp says 0.9 one byte after the line's LF, and 0.0 (as before any
        version) right after it: then the head's last bytes are SP target
        CRLF, or only target CRLF when the method and SP came in reads that
        ended before the target began (outside the head). When bytes follow
        that line in the same read, llhttp refuses them: 400."""
        url = self._url
        tail = self._head_tail = (self._head_tail + data)[-len(url) - 3:]
        line_end = url + b"\r\n"
        if version == "0.9" or (version == "0.0" and (tail.endswith(b" " + line_end) or tail == line_end)):
            raise ProtocolError(505, "HTTP/0.9 is not supported")

    def _head_size_so_far(self, data: bytes) -> int:
        """The bytes of the unfinished head that began in this feed: its
        request target, its complete fields (as stored, the way
        on_headers_complete measures them) and its unfinished last line."""
        size = len(data) - data.rfind(b"\n") - 1 + len(self._url)
        for name, value in self._headers:
            size += len(name) + len(value) + 4
        return max(1, min(size, len(data)))

    def detach(self) -> None:
        """The connection is gone: drop the references to the sink and to
        llhttp (which holds this parser's bound callbacks). Both are cycles;
        broken here, a connection is freed by reference counting when it
        closes instead of by the cyclic garbage collector, whose passes over
        every closed connection's objects cost more than the connection.
        ``feed`` must not be called after it."""
        self._sink = None
        self._parser = None

    # -- llhttp callbacks --------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.in_head = True
        if self._url:
            url = self._url + url
        self._url = url
        if len(url) > self._limit_request_line:
            raise ProtocolError(414, "Request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()  # (a table of common names measured slower: hashing a new bytes object)
        # RFC 9110 §5.5: a field value excludes trailing whitespace (llhttp
        # strips only the leading); most values have none to strip.
        if value and value[-1] in (32, 9):
            value = value.rstrip(b" \t")
        if name in _SPECIAL_HEADERS:
            if name == b"host":
                self._host = value if self._host is None else _MULTIPLE_HOSTS
            elif name == b"connection":
                self._connection = True
            else:
                self._special_header(name, value)
        self._headers.append((name, value))

    def _special_header(self, name: bytes, value: bytes) -> None:
        self._special = True
        if name == b"expect":
            self._expect = value.lower() == b"100-continue"
        elif name == b"transfer-encoding":
            te = self._transfer_encoding
            self._transfer_encoding = value if te is None else te + b"," + value
        elif name == b"upgrade":
            self._upgrade = value.strip().lower()
        elif name == b"content-length":  # llhttp validates it
            self._content_length = value
        else:  # a forwarding field
            self._forwarded = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self._head_bytes + self._feed_bytes > self._limit_header_size:
            # This head may be over the limit: measure it.
            if sum(len(name) + len(value) + 4 for name, value in self._headers) > self._limit_header_size:
                raise ProtocolError(431, "Request header fields too large")
        parser = self._parser
        keep_alive = parser.should_keep_alive()
        raw_method = parser.get_method()
        self._fresh = False
        # (Fields, not locals: the compiled build keeps them C-typed, h1.pxd.)
        if self._line is not None:
            self._at = len(raw_method) + len(self._url) + 1
            matched = self._line.startswith(b" HTTP/1.", self._at)
        else:
            matched = False
        if matched:
            # This head began the feed: "METHOD SP target SP HTTP/1.x" is
            # at hand (a line llhttp read leniently, with extra spaces or
            # empty lines before it, does not match here and asks llhttp).
            version = "1.0" if self._line[self._at + 8] == 48 else "1.1"
            self._line = None
        else:
            self._line = None
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                version = _other_version(version)
        method = _METHODS.get(raw_method) or _other_method(raw_method)
        if self._special and self._check_special(version):
            return  # the replayed framing of a request already reported
        # RFC 9112 §3.2: 400 for a missing (1.1), repeated or invalid Host,
        # whatever the form of the target.
        if self._host != self._valid_host:  # else: the same Host as last time
            self._check_host(version)
        headers = self._headers
        target = self._url
        if target[:1] == b"/" and not target.partition(b"#")[1]:  # origin-form, by far the most common (not ``in``: see Request)
            raw_path, _, query = target.partition(b"?")
        else:
            raw_path, query = self._split_target(method, target, headers)
        request = self._request = Request(method, target, raw_path, query, version, headers, keep_alive)
        # Trailer fields of a chunked body are counted, then dropped.
        self._headers = self._trailers
        if self._special:
            if self._expect and version == "1.1":
                request.expect_continue = True
            request.forwarded = self._forwarded
            upgrade = self._upgrade
            if upgrade is not None and parser.should_upgrade():
                if upgrade == b"websocket" and method == "GET":
                    request.upgrade = upgrade  # taken, or refused, by the I/O layer
                elif (
                    upgrade == b"h2c"
                    and self._h2c
                    and version == "1.1"
                    and self._transfer_encoding is None
                    and self._content_length in (None, b"0")
                ):
                    request.upgrade = upgrade  # io/h2.py upgrade_h2c: the answer comes over HTTP/2
                else:
                    # Not taken (h2c, websocket on a POST, ...): ignored, the
                    # body is read as HTTP/1.1 (RFC 9110 §7.8).
                    self._replay = self._replay_framing(keep_alive)
        self._sink.on_request(request)

    def _replay_framing(self, keep_alive: bool) -> bytes:
        if self._transfer_encoding is not None:
            framing = b"transfer-encoding: chunked\r\n"
        else:
            framing = b"content-length: %d\r\n" % int(self._content_length or b"0")
        if not keep_alive:
            framing += b"connection: close\r\n"
        return framing

    def _resume(self, data: bytes, offset: int) -> int | None:
        """After a request whose Upgrade is not taken: a fresh llhttp parser
        reads its body (from the replayed framing) and what follows."""
        framing = self._replay
        self._replay = None
        self._reset()
        self._parser = self._new_parser()
        self._replaying = True
        self._parser.feed_data(b"PUT / HTTP/1.1\r\n" + framing + b"\r\n")
        rest = self.feed(data[offset:])
        return None if rest is None else offset + rest

    def _check_special(self, version: str) -> bool:
        """Checks of the rarer fields; True for a replayed head (``_resume``)."""
        if self._replaying:
            self._replaying = False
            self._headers = self._trailers
            return True
        te = self._transfer_encoding
        if te is not None:
            if version == "1.0":
                # RFC 9112 §6.1: framing is faulty; we do not guess.
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if te.lower() != b"chunked":
                _check_transfer_coding(te)
        length = self._content_length
        if length is not None and length.isdigit() and int(length) > self._limit_request_body:
            # Refuse a declared body over the limit before reading it.
            raise ProtocolError(413, "Request body too large")
        return False

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limit_request_body:
            raise ProtocolError(413, "Request body too large")
        self._sink.on_body(self._request, body)

    def on_message_complete(self) -> None:
        # Reset per-message state here rather than in on_message_begin (one
        # callback less per request).
        self._fresh = True
        self._head_bytes = 0
        self._url = b""
        self._headers = []
        self._host = None
        self._connection = False
        if self._special:
            if self._replay is not None:
                return  # llhttp skipped the body; _resume reads it
            self._special = self._expect = False
            self._transfer_encoding = self._upgrade = self._content_length = None
            self._forwarded = False
            self._body_size = 0
            self._trailers.size = 0
        self._sink.on_request_complete(self._request)

    def _reset(self) -> None:
        self._head_bytes = 0
        self._url = b""
        self._headers = []
        self._host = None
        self._connection = False
        self._special = self._expect = False
        self._transfer_encoding = self._upgrade = self._content_length = None
        self._forwarded = False
        self._body_size = 0
        self._trailers.size = 0

    # -- helpers -------------------------------------------------------------

    def _split_target(self, method: str, target: bytes, headers) -> tuple[bytes, bytes]:
        if b"#" in target:
            # RFC 9112 §3.2: no request-target form has a fragment.
            raise ProtocolError(400, "Invalid request target: a fragment is not allowed")
        if target == b"*":
            if method != "OPTIONS":
                raise ProtocolError(400, "Asterisk-form is only valid for OPTIONS")
            return b"*", b""
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise ProtocolError(400, "Invalid request target") from None
        if not url.schema or not url.host:
            raise ProtocolError(400, "Invalid request target")
        if url.userinfo:
            # RFC 9110 §4.2.4: userinfo in an http(s) URI is an error.
            raise ProtocolError(400, "Invalid request target")
        # RFC 9112 §3.2.2: absolute-form wins over any Host header.
        host = url.host
        if b":" in host:  # an IPv6 literal: put back the brackets parse_url took off
            host = b"[" + host + b"]"
        authority = host if url.port is None else host + b":%d" % url.port
        for index, (name, _) in enumerate(headers):
            if name == b"host":
                headers[index] = (b"host", authority)
                break
        else:
            headers.append((b"host", authority))
        return url.path or b"/", url.query or b""

    def _check_host(self, version: str) -> None:
        host = self._host
        if host is None:
            if version == "1.1":
                raise ProtocolError(400, "Missing Host header")
            return  # HTTP/1.0 may leave it out
        if host is _MULTIPLE_HOSTS:
            raise ProtocolError(400, "Multiple Host headers")
        if not _VALID_HOST(host):
            raise ProtocolError(400, "Invalid Host header")
        self._valid_host = host  # the same Host on the next request skips the regex

    def _upgraded(self, data: bytes, offset: int) -> int | None:
        request = self._request
        if request is not None and request.upgrade is not None:
            return offset  # websocket on a GET, or h2c (set in on_headers_complete)
        # CONNECT is refused in on_headers_complete; anything else that makes
        # llhttp stop is served over HTTP/1.1, then the connection closes.
        if request is not None:
            request.keep_alive = False
            request.upgrade = None
        return None


# -- responses -----------------------------------------------------------

STATUS_LINES: dict[int, bytes] = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


class ResponsePlan:
    """How to send a response, decided once per distinct (status, headers,
    request kind) and cached: the head bytes up to the per-response lines,
    and the body framing. Shared between responses: never change its fields
    (``render`` keeps the last head it built, for the next response)."""

    __slots__ = (
        "prefix",
        "suffix",
        "chunked",
        "keep_alive",
        "body_allowed",
        "content_length",
        "add_length",
        "_extra",
        "_head",
    )

    def __init__(self, prefix, suffix, chunked, keep_alive, body_allowed, content_length, add_length):
        self.prefix: bytes = prefix  # status line and the app's header lines
        self.suffix: bytes = suffix  # framing and connection lines
        self.chunked: bool = chunked
        self.keep_alive: bool = keep_alive
        self.body_allowed: bool = body_allowed
        self.content_length: int | None = content_length  # as the app declared it
        self.add_length: bool = add_length  # the sender adds "content-length: <len(body)>"
        self._extra: bytes | None = None  # the extra lines _head was built with
        self._head = b""  # the last head without a length line

    def render(self, body_length: int | None, extra: bytes) -> bytes:
        """The whole head; ``extra`` is prebuilt lines (Date, Server), the
        same object for a second: a head without a length line is built once
        per ``extra``."""
        if self.add_length:
            return b"%bcontent-length: %d\r\n%b%b\r\n" % (self.prefix, body_length, self.suffix, extra)
        if extra is not self._extra:
            self._head = b"%b%b%b\r\n" % (self.prefix, self.suffix, extra)
            self._extra = extra
        return self._head


class _AppOwnedPlan(ResponsePlan):
    """A plan whose app set Date or Server: our lines of those names are
    left out of ``extra`` (once per distinct ``extra``, as heads are)."""

    __slots__ = ("drop", "_extra_in", "_extra_out")

    def render(self, body_length: int | None, extra: bytes) -> bytes:
        if extra is not self._extra_in:
            self._extra_in = extra
            self._extra_out = b"".join(
                line + b"\r\n" for line in extra.split(b"\r\n")[:-1] if not line.lower().startswith(self.drop)
            )
        return ResponsePlan.render(self, body_length, self._extra_out)


class ResponseHead:
    """``encode_head``'s answer: the head bytes and the plan they came from."""

    __slots__ = ("data", "chunked", "keep_alive", "body_allowed", "content_length")

    def __init__(self, data, plan: ResponsePlan, body_length: int | None):
        self.data: bytes = data
        self.chunked = plan.chunked
        self.keep_alive = plan.keep_alive
        self.body_allowed = plan.body_allowed
        self.content_length = body_length if plan.add_length else plan.content_length


class InvalidResponse(ValueError):
    """The application gave a status or headers that cannot be sent."""


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_checked_names: set[bytes] = set()
_NO_BODY_STATUSES = frozenset({204, 304})
# Hop-by-hop fields (RFC 9110 §7.6.1) the server owns on its connection;
# Connection and Transfer-Encoding are handled apart. Upgrade stays (426).
_HOP_BY_HOP = frozenset({b"keep-alive", b"proxy-connection", b"te"})
# Fields corral adds itself (``extra``): the app's own value replaces ours.
_OURS = frozenset({b"date", b"server"})
_plans: dict = {}
_PLAN_CACHE_SIZE = 1024


def _check_name(name: bytes) -> None:
    if name in _checked_names:
        return
    if type(name) is not bytes or not _TOKEN(name):
        raise InvalidResponse(f"invalid header name {name!r}")
    if len(_checked_names) < 4096:
        _checked_names.add(name)


def plan_response(status: int, headers, head_request: bool, http11: bool, keep_alive: bool, one_piece: bool) -> ResponsePlan:
    """The cached plan for a response (see ``ResponsePlan``).

    ``one_piece``: the app gave the whole body in its first body message, so
    Content-Length can be added when the app did not set it. ``status`` must
    be an int (the cache would take 200.0 for 200): callers check it first."""
    # One pass over the headers: an iterator must not be consumed by the key.
    items = headers if type(headers) is tuple else tuple(headers)
    key = (status, items, head_request, http11, keep_alive, one_piece)
    try:
        plan = _plans.get(key)
    except TypeError:  # unhashable headers (lists): plan without the cache
        key = plan = None
    if plan is None:
        plan = _plan(status, items, head_request, http11, keep_alive, one_piece)
        if key is not None:
            if len(_plans) >= _PLAN_CACHE_SIZE:
                _plans.clear()
            _plans[key] = plan
    return plan


def _plan(status, headers, head_request, http11, keep_alive, one_piece) -> ResponsePlan:
    if type(status) is not int or not 100 <= status <= 999:
        raise InvalidResponse(f"invalid status {status!r}")
    if 100 <= status < 200:
        raise InvalidResponse("informational (1xx) responses cannot be sent with http.response.start")
    parts = [status_line(status)]
    content_length = None
    chunked = False
    framing = None  # the app's framing field seen first
    ours = None  # names of _OURS the app set
    count = 0
    for name, value in headers:
        _check_name(name)
        if type(value) is not bytes:
            raise InvalidResponse(f"header value for {name!r} must be bytes")
        lname = name.lower()
        if lname == b"content-length" or lname == b"transfer-encoding":
            # Two framings (or two lengths) would let a client read this
            # response differently from us: refuse before anything is sent.
            if framing is not None:
                raise InvalidResponse(f"{framing.decode()} and {lname.decode()} both set: one body framing only")
            framing = lname
            if lname == b"transfer-encoding":
                # We frame the body ourselves; drop the app's framing header.
                chunked = True
                continue
            if not value.isdigit():
                raise InvalidResponse(f"invalid content-length {value!r}")
            if status == 204:
                continue  # RFC 9110 §8.6: never on a 204
            content_length = int(value)
        elif lname in _HOP_BY_HOP:
            continue
        elif lname in _OURS:
            ours = lname if ours is None else ours + b" " + lname
        elif lname == b"connection":
            # Hop-by-hop: the server owns it. The app may ask for a close.
            if b"close" in value.lower():
                keep_alive = False
            continue
        parts += (name, b": ", value, b"\r\n")
        count += 1
    if count:
        lines = b"".join(parts[1:])
        if b"\x00" in lines or lines.count(b"\n") != count or lines.count(b"\r") != count:
            raise InvalidResponse("header values must not contain CR, LF or NUL")
    body_allowed = status not in _NO_BODY_STATUSES and not head_request
    add_length = False
    if status in _NO_BODY_STATUSES:
        chunked = False  # 304 may keep the app's Content-Length (RFC 9110 §8.6)
    elif content_length is None:
        if one_piece:
            add_length = True
            chunked = False
        elif not body_allowed:
            chunked = False
        elif http11:
            chunked = True
        else:
            keep_alive = False  # HTTP/1.0: the body ends when the connection does
            chunked = False
    else:
        chunked = False
    suffix = b"transfer-encoding: chunked\r\n" if chunked else b""
    if not keep_alive:
        suffix += b"connection: close\r\n"
    elif not http11:
        suffix += b"connection: keep-alive\r\n"
    plan = ResponsePlan if ours is None else _AppOwnedPlan
    plan = plan(b"".join(parts), suffix, chunked, keep_alive, body_allowed, content_length, add_length)
    if ours is not None:
        plan.drop = tuple(name + b":" for name in ours.split())
        plan._extra_in = plan._extra_out = None
    return plan


def encode_head(
    status: int,
    headers,
    *,
    request: Request,
    keep_alive: bool,
    body_length: int | None,
    extra: bytes = b"",
) -> ResponseHead:
    """Build a response head (one join, cached plan; see ``plan_response``).

    ``body_length`` is the length of the whole body when the application gave
    it in one piece (so Content-Length can be added), else None. ``extra`` is
    prebuilt header lines (Date, Server) ending in CRLF.
    """
    if type(status) is not int:
        raise InvalidResponse(f"invalid status {status!r}")
    one_piece = body_length is not None and (request.method != "HEAD" or body_length > 0)
    plan = plan_response(status, headers, request.method == "HEAD", request.http_version == "1.1", keep_alive, one_piece)
    return ResponseHead(plan.render(body_length, extra), plan, body_length)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(status: int, detail: str = "", extra: bytes = b"", *, keep_alive: bool = False) -> bytes:
    """A short plain-text answer; unless ``keep_alive``, the connection closes after it."""
    phrase = HTTPStatus(status).phrase if status in STATUS_LINES else "Error"
    body = f"{detail or phrase}\n"
    body_bytes = body.encode("utf-8", "replace")
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body_bytes),
            b"" if keep_alive else b"connection: close\r\n",
            extra,
            b"\r\n",
            body_bytes,
        )
    )
