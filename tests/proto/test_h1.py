"""HTTP/1.1 without sockets: corral.proto.h1, grouped by RFC section.

Every request input is fed three ways (``FEEDS``): whole, one byte at a
time, and followed by a second, pipelined request. Valid inputs are also fed
followed by garbage, which must be rejected only after the valid request was
reported. The recording sink merges consecutive body pieces, so the three
feeds must produce exactly the same events.
"""

from __future__ import annotations

import pytest

from corral.proto.h1 import (
    CONTINUE,
    LAST_CHUNK,
    InvalidResponse,
    ProtocolError,
    Request,
    RequestParser,
    encode_chunk,
    encode_head,
    error_response,
    plan_response,
)

NEXT = b"GET /next HTTP/1.1\r\nHost: next.example\r\n\r\n"
GARBAGE = b"\x01GARBAGE\r\n\r\n"
FEEDS = ("whole", "bytewise", "pipelined")


class Recorder:
    """A parser sink that records what it is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_request(self, request: Request) -> None:
        self.events.append(("request", request))

    def on_body(self, request: Request, chunk: bytes) -> None:
        assert isinstance(chunk, bytes) and chunk
        last = self.events[-1] if self.events else None
        if last is not None and last[0] == "body" and last[1] is request:
            self.events[-1] = ("body", request, last[2] + chunk)
        else:
            self.events.append(("body", request, chunk))

    def on_request_complete(self, request: Request) -> None:
        self.events.append(("complete", request))

    @property
    def requests(self) -> list[Request]:
        return [event[1] for event in self.events if event[0] == "request"]

    def kinds(self) -> list[str]:
        return [event[0] for event in self.events]

    def body(self, request: Request) -> bytes:
        return b"".join(e[2] for e in self.events if e[0] == "body" and e[1] is request)


def _feed(parser: RequestParser, data: bytes, how: str):
    """Feed ``data``; return the bytes left after an upgrade, else None."""
    if how == "bytewise":
        for index in range(len(data)):
            offset = parser.feed(data[index:index + 1])
            if offset is not None:
                return data[index + offset:]
        return None
    offset = parser.feed(data)
    return None if offset is None else data[offset:]


def parse(data: bytes, how: str = "whole", **limits) -> Recorder:
    """Parse a valid input; in ``pipelined`` mode check and drop the NEXT request.

    After a request that does not keep the connection alive, nothing more is
    processed (RFC 9112 §9.6): then NEXT must not be reported at all."""
    sink = Recorder()
    parser = RequestParser(sink, **limits)
    _feed(parser, data + NEXT if how == "pipelined" else data, how)
    assert not parser.in_head
    if how == "pipelined" and not sink.requests[-1].keep_alive:
        assert all(r.target != b"/next" for r in sink.requests)
    elif how == "pipelined":
        assert sink.kinds()[-2:] == ["request", "complete"]
        following = sink.events[-1][1]
        assert (following.method, following.target, following.headers) == ("GET", b"/next", [(b"host", b"next.example")])
        del sink.events[-2:]
    return sink


def reject(data: bytes, how: str = "whole", **limits) -> tuple[ProtocolError, Recorder]:
    """Parse an input that must be refused; no request after the error is reported."""
    sink = Recorder()
    parser = RequestParser(sink, **limits)
    with pytest.raises(ProtocolError) as info:
        _feed(parser, data + NEXT if how == "pipelined" else data, how)
    assert all(r.target != b"/next" for r in sink.requests)
    return info.value, sink


def only_request(sink: Recorder) -> Request:
    assert sink.kinds() in (["request", "complete"], ["request", "body", "complete"])
    return sink.requests[0]


@pytest.fixture(params=FEEDS)
def how(request):
    return request.param


def assert_rejected(data: bytes, how: str, status: int, head_reported: bool = False, **limits) -> ProtocolError:
    error, sink = reject(data, how, **limits)
    assert error.status == status, error.detail
    assert error.detail
    if not head_reported:
        assert sink.events == []
    return error


# -- requests --------------------------------------------------------------


class TestRFC9112Section2_2MessageParsing:
    def test_simple_get(self, how):
        sink = parse(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", how)
        request = only_request(sink)
        assert sink.kinds() == ["request", "complete"]
        assert request.method == "GET"
        assert request.target == b"/"
        assert request.path == "/"
        assert request.raw_path == b"/"
        assert request.query_string == b""
        assert request.http_version == "1.1"
        assert request.headers == [(b"host", b"example.com")]
        assert request.keep_alive is True
        assert request.expect_continue is False
        assert request.upgrade is None

    def test_empty_lines_before_the_request_line_are_ignored(self, how):
        request = only_request(parse(b"\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", how))
        assert request.target == b"/x"

    def test_bare_lf_line_endings_are_rejected(self, how):
        assert_rejected(b"GET / HTTP/1.1\nHost: a\n\n", how, 400)

    def test_whitespace_before_the_first_header_is_rejected(self, how):
        # RFC 9112 §2.2: it could smuggle a header past other parsers.
        assert_rejected(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", how, 400)

    def test_garbage_after_a_valid_request_is_rejected_after_reporting_it(self):
        sink = Recorder()
        parser = RequestParser(sink)
        with pytest.raises(ProtocolError) as info:
            parser.feed(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n" + GARBAGE)
        assert info.value.status == 400
        assert sink.kinds() == ["request", "complete"]
        assert sink.requests[0].target == b"/a"

    def test_in_head_is_true_only_inside_a_head(self):
        sink = Recorder()
        parser = RequestParser(sink)
        assert parser.in_head is False
        parser.feed(b"GET / HTTP/1.1\r\nHo")
        assert parser.in_head is True
        parser.feed(b"st: a\r\n\r\n")
        assert parser.in_head is False
        assert sink.kinds() == ["request", "complete"]


class TestRFC9112Section3RequestLine:
    @pytest.mark.parametrize(
        "line",
        [
            b"GET / HTTP/1.1 extra",
            b"GARBAGE",
            b"GET /a b HTTP/1.1",
            b"GET / HTTP/1.x",
            b"GET / http/1.1",
            b"GET\t/ HTTP/1.1",
            b"/ HTTP/1.1",
            b"GET /a\x01b HTTP/1.1",
            b"GET /caf\xc3\xa9 HTTP/1.1",
        ],
    )
    def test_malformed_request_line_is_400(self, how, line):
        assert_rejected(line + b"\r\nHost: a\r\n\r\n", how, 400)

    def test_methods_are_reported_as_str(self, how):
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
            request = only_request(parse(method.encode() + b" / HTTP/1.1\r\nHost: a\r\n\r\n", how))
            assert request.method == method

    @pytest.mark.parametrize("method", [b"FOO", b"X-CUSTOM!", b"GETX", b"get", b"DESCRIBE", b"BREW"])
    def test_an_extension_method_is_501(self, method):
        # Issue 9 finding f: a valid method token llhttp does not know was
        # 400 "Invalid method"; RFC 9110 §9.1 says 501. (llhttp cannot pass
        # it on: its method table is fixed.)
        for how in ("whole", "pipelined"):
            error = assert_rejected(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n", how, 501)
            assert "not implemented" in error.detail

    @pytest.mark.parametrize("line", [b"\x01GET / HTTP/1.1", b"G(T / HTTP/1.1", b"GET\t/ HTTP/1.1"])
    def test_a_malformed_method_is_still_400(self, how, line):
        assert_rejected(line + b"\r\nHost: a\r\n\r\n", how, 400)

    def test_request_line_over_the_limit_is_414(self, how):
        target = b"/" + b"a" * 199
        assert_rejected(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", how, 414, limit_request_line=100)

    def test_request_line_at_the_limit_is_accepted(self, how):
        target = b"/" + b"a" * 99
        request = only_request(parse(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", how, limit_request_line=100))
        assert request.target == target

    def test_default_request_line_limit_is_8192(self):
        error, _ = reject(b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert error.status == 414
        request = only_request(parse(b"GET /" + b"a" * 8191 + b" HTTP/1.1\r\nHost: a\r\n\r\n"))
        assert len(request.target) == 8192


class TestRFC9112Section2_3HTTPVersion:
    def test_http_1_0_is_accepted(self, how):
        request = only_request(parse(b"GET / HTTP/1.0\r\n\r\n", how))
        assert request.http_version == "1.0"
        assert request.headers == []

    @pytest.mark.parametrize(
        "head, version, keep_alive",
        [
            (b"GET / HTTP/1.1\r\nHost: a\r\n", "1.1", True),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n", "1.1", True),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n", "1.1", False),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade-Insecure, close\r\n", "1.1", False),
            (b"GET / HTTP/1.0\r\n", "1.0", False),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n", "1.0", True),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n", "1.0", False),
        ],
    )
    def test_version_and_keep_alive(self, how, head, version, keep_alive):
        request = only_request(parse(head + b"\r\n", how))
        assert (request.http_version, request.keep_alive) == (version, keep_alive)

    def test_versions_alternating_on_one_connection(self):
        sink = Recorder()
        parser = RequestParser(sink)
        heads = [
            b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            b"GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ]
        parser.feed(b"".join(heads))
        assert [(r.target, r.http_version, r.keep_alive) for r in sink.requests] == [
            (b"/1", "1.1", True),
            (b"/2", "1.0", True),
            (b"/3", "1.1", True),
            (b"/4", "1.0", True),
        ]

    @pytest.mark.parametrize(
        "line, version",
        [
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "2.0"),
            (b"GET / HTTP/2.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", "2.0"),
            (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", "3.0"),
            (b"GET /\r\n\r\n", "0.9"),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "2.0"),
        ],
    )
    def test_unsupported_version_is_505(self, how, line, version):
        error = assert_rejected(line, how, 505)
        assert error.detail == f"HTTP/{version} is not supported"

    @pytest.mark.parametrize("data", [b"GET /\r\n", b"GET /index.html\r\n", b"GET /\r\nX", b"\r\nGET /x?y=1\r\n"])
    def test_http_0_9_is_505_without_waiting_for_more(self, data):
        # Issue 9 loss 8: an HTTP/0.9 request ("GET /" CRLF) has no header
        # block; llhttp waited for one and the client for the header timeout.
        for how in ("whole", "bytewise"):
            error = assert_rejected(data, how, 505)
            assert error.detail == "HTTP/0.9 is not supported"

    @pytest.mark.parametrize("minor", [b"2", b"9"])
    @pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n"])
    def test_a_higher_minor_version_is_served_as_http_1_1(self, how, minor, connection):
        # Issue 9 finding g: RFC 9110 §2.5; was 505.
        request = only_request(parse(b"GET / HTTP/1." + minor + b"\r\nHost: a\r\n" + connection + b"\r\n", how))
        assert request.http_version == "1.1"
        assert request.keep_alive is (connection != b"Connection: close\r\n")

    @pytest.mark.parametrize("version", [b"2.0", b"3.0", b"9.0", b"0.0", b"0.5", b"0.9"])
    def test_other_major_versions_stay_505(self, how, version):
        assert_rejected(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n", how, 505)

    @pytest.mark.parametrize("version", [b"2.1", b"3.1", b"9.9", b"3.0"])
    @pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n"])
    def test_a_major_version_above_1_is_505_with_any_minor(self, how, version, connection):
        # Issue 19 finding 16: HTTP/3.1 (2.1 ... 9.9) was served as HTTP/1.1.
        error = assert_rejected(b"GET /x HTTP/" + version + b"\r\nHost: a\r\n" + connection + b"\r\n", how, 505)
        assert error.detail == f"HTTP/{version.decode()} is not supported"

    @pytest.mark.parametrize("version", [b"3.1", b"2.1"])
    def test_a_major_version_above_1_is_505_behind_other_requests(self, version):
        # Pipelined behind a request (and its body) in the same read, after
        # a read that ended in the method, and after empty lines: the
        # version is found wherever the head starts.
        body = b"a HTTP/1.1 b HTTP/1.1 c"
        cases = [
            [b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
             + b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n"],
            [b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", b" / HTTP/" + version + b"\r\nHost: a\r\n\r\n"],
            [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\n\r\nGET / HTTP/" + version + b"\r\nX: HTTP/1.1\r\n\r\n"],
            [b"GET /a", b"bc HTTP/" + version + b"\r\nX: HTTP/1.1 HTTP/1.1\r\n\r\n"],
        ]
        for feeds in cases:
            parser = RequestParser(Recorder())
            with pytest.raises(ProtocolError) as info:
                for data in feeds:
                    parser.feed(data)
            assert info.value.status == 505, feeds

    @pytest.mark.parametrize("version, expected", [(b"1.0", "1.0"), (b"1.1", "1.1"), (b"1.2", "1.1"), (b"1.9", "1.1")])
    def test_versions_read_from_the_bytes_agree_with_llhttp(self, version, expected):
        # The first head of a read takes its version from the bytes; the
        # ones behind it ask llhttp: both give the same answer.
        sink = Recorder()
        head = b"GET /v HTTP/" + version + b"\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
        RequestParser(sink).feed(head * 3)
        assert [r.http_version for r in sink.requests] == [expected] * 3


class TestRFC9112Section3_2RequestTarget:
    def test_origin_form_query_and_percent_decoding(self, how):
        request = only_request(parse(b"GET /caf%C3%A9/a%2Fb%20c?x=%20&y=1 HTTP/1.1\r\nHost: a\r\n\r\n", how))
        assert request.path == "/caf\u00e9/a/b c"
        assert request.raw_path == b"/caf%C3%A9/a%2Fb%20c"
        assert request.query_string == b"x=%20&y=1"
        assert request.target == b"/caf%C3%A9/a%2Fb%20c?x=%20&y=1"

    def test_invalid_utf8_in_percent_encoding_survives_as_surrogates(self, how):
        request = only_request(parse(b"GET /a%FF HTTP/1.1\r\nHost: a\r\n\r\n", how))
        assert request.path == "/a\udcff"
        assert request.path.encode("utf-8", "surrogateescape") == b"/a\xff"
        assert request.raw_path == b"/a%FF"

    @pytest.mark.parametrize(
        "target", [b"/scope#frag", b"/a?x=1#frag", b"/b#frag?no", b"/#", b"http://h.example/x#f"]
    )
    def test_a_fragment_in_the_target_is_400(self, how, target):
        # Issue 9 finding j: RFC 9112 §3.2 has no fragment in any target form (h11 agrees).
        error = assert_rejected(b"GET " + target + b" HTTP/1.1\r\nHost: h.example\r\n\r\n", how, 400)
        assert "fragment" in error.detail

    def test_absolute_form_authority_replaces_host(self, how):
        # RFC 9112 §3.2.2: the authority of the target wins over Host.
        data = b"GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nX-A: 1\r\nHost: other.example\r\nX-B: 2\r\n\r\n"
        request = only_request(parse(data, how))
        assert request.path == "/p/q"
        assert request.raw_path == b"/p/q"
        assert request.query_string == b"x=1"
        assert request.headers == [(b"x-a", b"1"), (b"host", b"example.com:8080"), (b"x-b", b"2")]

    def test_absolute_form_without_path_is_root(self, how):
        request = only_request(parse(b"GET http://example.com?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", how))
        assert (request.path, request.query_string, request.headers) == ("/", b"x=1", [(b"host", b"example.com")])

    def test_absolute_form_ipv6_authority_keeps_brackets(self, how):
        request = only_request(parse(b"GET http://[::1]:8080/p HTTP/1.1\r\nHost: x\r\n\r\n", how))
        assert request.headers == [(b"host", b"[::1]:8080")]

    def test_absolute_form_with_userinfo_is_400(self, how):
        assert_rejected(b"GET http://user:pw@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", how, 400)

    def test_absolute_form_still_needs_exactly_one_valid_host(self, how):
        # RFC 9112 §3.2: "any HTTP/1.1 request message that lacks a Host header field".
        assert_rejected(b"GET http://example.com/ HTTP/1.1\r\n\r\n", how, 400)
        assert_rejected(b"GET http://example.com/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", how, 400)
        assert_rejected(b"GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n", how, 400)

    def test_asterisk_form_for_options(self, how):
        request = only_request(parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", how))
        assert (request.method, request.target, request.path, request.raw_path) == ("OPTIONS", b"*", "*", b"*")

    @pytest.mark.parametrize("method", [b"GET", b"POST", b"HEAD"])
    def test_asterisk_form_is_400_for_other_methods(self, how, method):
        assert_rejected(method + b" * HTTP/1.1\r\nHost: a\r\n\r\n", how, 400)

    def test_authority_form_for_other_methods_is_400(self, how):
        assert_rejected(b"GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n", how, 400)

    @pytest.mark.parametrize("target", [b"example.com:443", b"/", b"http://example.com/"])
    def test_connect_is_501_before_the_request_is_reported(self, how, target):
        error = assert_rejected(b"CONNECT " + target + b" HTTP/1.1\r\nHost: example.com:443\r\n\r\n", how, 501)
        assert error.detail == "CONNECT is not supported"


class TestRFC9112Section3_2Host:
    def test_missing_host_in_http_1_1_is_400(self, how):
        error = assert_rejected(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", how, 400)
        assert error.detail == "Missing Host header"

    def test_http_1_0_needs_no_host(self, how):
        assert only_request(parse(b"GET / HTTP/1.0\r\nX-A: b\r\n\r\n", how)).headers == [(b"x-a", b"b")]

    def test_multiple_host_is_400(self, how):
        error = assert_rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", how, 400)
        assert error.detail == "Multiple Host headers"

    def test_multiple_host_in_http_1_0_is_400(self, how):
        assert_rejected(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", how, 400)

    @pytest.mark.parametrize("host", [b"a b", b"a/b", b"a@b", b"a:b", b"a\tb", b"[::1", b"a\\b", b"a?b"])
    def test_invalid_host_is_400(self, how, host):
        error = assert_rejected(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", how, 400)
        assert error.detail == "Invalid Host header"

    @pytest.mark.parametrize(
        "host",
        [b"example.com", b"example.com:8080", b"127.0.0.1:80", b"[::1]", b"[::1]:8000", b"xn--bcher-kva.example", b""],
    )
    def test_valid_host_is_accepted(self, how, host):
        assert only_request(parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", how)).headers == [(b"host", host)]

    def test_whitespace_around_host_is_not_part_of_it(self, how):
        request = only_request(parse(b"GET / HTTP/1.1\r\nHost:   example.com  \t\r\n\r\n", how))
        assert request.headers == [(b"host", b"example.com")]


class TestRFC9112Section5FieldSyntax:
    def test_names_lower_cased_in_order_with_duplicates(self, how):
        data = (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nAccept: text/html\r\nx-one: 2\r\n"
            b"COOKIE: a=b\r\nCookie: c=d\r\n\r\n"
        )
        request = only_request(parse(data, how))
        assert request.headers == [
            (b"host", b"a"),
            (b"x-one", b"1"),
            (b"accept", b"text/html"),
            (b"x-one", b"2"),
            (b"cookie", b"a=b"),
            (b"cookie", b"c=d"),
        ]

    def test_values_keep_their_case_and_inner_whitespace_only(self, how):
        request = only_request(parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  Mixed  Case\t \r\nX-B:\r\n\r\n", how))
        assert request.headers == [(b"host", b"a"), (b"x-a", b"Mixed  Case"), (b"x-b", b"")]

    def test_obs_text_is_kept_as_bytes(self, how):
        request = only_request(parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n", how))
        assert request.headers[1] == (b"x-a", b"caf\xe9")

    def test_obs_fold_is_400(self, how):
        assert_rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", how, 400)
        assert_rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", how, 400)

    @pytest.mark.parametrize(
        "value",
        [b"b\x00c", b"b\rc", b"b\nc: d", b"b\x7fc", b"b\x01"],
        ids=["NUL", "bare-CR", "bare-LF", "DEL", "CTL"],
    )
    def test_control_characters_in_a_value_are_400(self, how, value):
        assert_rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + value + b"\r\n\r\n", how, 400)

    def test_bare_lf_ending_a_header_is_400(self, how):
        assert_rejected(b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", how, 400)

    @pytest.mark.parametrize("line", [b"X A: b", b"X-A : b", b": b", b"X(A): b", b"X-A"])
    def test_invalid_field_name_is_400(self, how, line):
        assert_rejected(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n", how, 400)

    def test_header_block_over_the_limit_is_431(self, how):
        error = assert_rejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 400 + b"\r\n\r\n", how, 431, limit_header_size=256
        )
        assert error.detail == "Request header fields too large"

    def test_many_small_headers_over_the_limit_are_431(self, how):
        assert_rejected(b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: a\r\n" * 100 + b"\r\n", how, 431, limit_header_size=256)

    def test_header_block_under_the_limit_is_accepted(self, how):
        data = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: a\r\n" * 20 + b"\r\n"
        request = only_request(parse(data, how, limit_header_size=256))
        assert len(request.headers) == 21

    def test_an_unterminated_huge_header_is_431_before_it_ends(self):
        # llhttp holds a header until its end: the parser bounds the head itself.
        sink = Recorder()
        parser = RequestParser(sink, limit_request_line=100, limit_header_size=256)
        parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ")
        with pytest.raises(ProtocolError) as info:
            for _ in range(10):
                parser.feed(b"a" * 100)
        assert info.value.status == 431
        assert sink.events == []

    def test_the_limit_counts_only_the_unfinished_heads_bytes(self):
        # Issue 9 finding d: every byte of a feed that ended inside a head
        # counted against it, so many pipelined requests (or a body) before a
        # head split across two feeds made it 431.
        limits = dict(limit_request_line=100, limit_header_size=256)
        one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        post = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
        for before in (one * 100, post, one * 10 + post + one * 10):
            sink = Recorder()
            parser = RequestParser(sink, **limits)
            parser.feed(before + b"GET /last HTTP/1.1\r\nHost: a\r\n")
            parser.feed(b"\r\n")
            assert sink.requests[-1].target == b"/last"
            assert sink.kinds()[-2:] == ["request", "complete"]

    @pytest.mark.parametrize("unfinished", [b"X-A: " + b"a" * 400, b"X-A: b\r\n" * 60, b"X-" + b"a" * 400])
    def test_an_unfinished_head_after_other_requests_is_still_bounded(self, unfinished):
        sink = Recorder()
        parser = RequestParser(sink, limit_request_line=100, limit_header_size=256)
        with pytest.raises(ProtocolError) as info:
            parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 3 + b"GET /b HTTP/1.1\r\nHost: a\r\n" + unfinished)
        assert info.value.status == 431
        assert len(sink.requests) == 3


class TestRFC9112Section6MessageBody:
    def test_content_length_body(self, how):
        sink = parse(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", how)
        request = only_request(sink)
        assert sink.kinds() == ["request", "body", "complete"]
        assert sink.body(request) == b"hello world"
        assert request.headers == [(b"host", b"a"), (b"content-length", b"11")]

    def test_content_length_zero_has_no_body(self, how):
        sink = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", how)
        assert sink.kinds() == ["request", "complete"]

    def test_no_framing_means_no_body(self, how):
        sink = parse(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", how)
        assert sink.kinds() == ["request", "complete"]

    def test_content_length_with_leading_zeros_and_trailing_space(self, how):
        sink = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003 \r\n\r\nabc", how)
        assert sink.body(sink.requests[0]) == b"abc"

    def test_chunked_body(self, how):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        sink = parse(data, how)
        assert sink.kinds() == ["request", "body", "complete"]
        assert sink.body(sink.requests[0]) == b"hello world"

    def test_chunk_extensions_are_ignored(self, how):
        data = (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'3;name=value\r\nabc\r\n2;a="b c";d\r\nde\r\nA\r\n0123456789\r\n0;last\r\n\r\n'
        )
        sink = parse(data, how)
        assert sink.body(sink.requests[0]) == b"abcde0123456789"
        assert sink.kinds() == ["request", "body", "complete"]

    def test_chunked_is_case_insensitive(self, how):
        sink = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", how)
        assert sink.body(sink.requests[0]) == b"x"

    def test_trailer_fields_over_the_header_limit_are_431(self, how):
        data = (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n" + b"X-T: " + b"t" * 300 + b"\r\n\r\n"
        )
        error = assert_rejected(data, how, 431, head_reported=True, limit_header_size=256)
        assert error.detail == "Request header fields too large"

    def test_trailer_limit_is_per_request(self):
        sink = Recorder()
        parser = RequestParser(sink, limit_header_size=256)
        one = (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\nx\r\n0\r\nX-T: " + b"t" * 150 + b"\r\n\r\n"
        )
        parser.feed(one * 3)
        assert [kind for kind in sink.kinds() if kind == "complete"] == ["complete"] * 3

    def test_trailer_fields_do_not_join_the_headers(self, how):
        data = (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nHost: evil\r\n\r\n"
        )
        sink = parse(data, how)
        request = only_request(sink)
        assert request.headers == [(b"host", b"a"), (b"transfer-encoding", b"chunked")]
        assert sink.body(request) == b"abc"

    @pytest.mark.parametrize(
        "headers",
        [
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        ],
    )
    def test_content_length_with_transfer_encoding_is_400(self, how, headers):
        assert_rejected(b"POST / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n3\r\nabc\r\n0\r\n\r\n", how, 400)

    @pytest.mark.parametrize(
        "headers",
        [
            b"Content-Length: 3\r\nContent-Length: 3\r\n",
            b"Content-Length: 3\r\nContent-Length: 4\r\n",
            b"Content-Length: 3, 3\r\n",
            b"Content-Length: 3, 4\r\n",
        ],
    )
    def test_duplicate_or_conflicting_content_length_is_400(self, how, headers):
        assert_rejected(b"POST / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\nabcd", how, 400)

    @pytest.mark.parametrize("value", [b"abc", b"-1", b"+3", b"0x10", b"1.5", b"", b"3 3", b"99999999999999999999999"])
    def test_invalid_content_length_is_400(self, how, value):
        assert_rejected(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\n", how, 400)

    @pytest.mark.parametrize("size_line", [b"zz", b"-3", b"3 ", b" 3", b"0x3", b"FFFFFFFFFFFFFFFFFF", b""])
    def test_invalid_chunk_size_is_400(self, how, size_line):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\nabc\r\n0\r\n\r\n"
        error, sink = reject(data, how)
        assert error.status == 400
        # The head was valid and reported; the body never completes.
        assert sink.kinds() == ["request"]

    def test_chunk_data_not_followed_by_crlf_is_400(self, how):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"
        error, sink = reject(data, how)
        assert error.status == 400
        assert sink.kinds() == ["request", "body"]
        assert "complete" not in sink.kinds()

    def test_transfer_encoding_in_http_1_0_is_400(self, how):
        error = assert_rejected(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", how, 400)
        assert error.detail == "Transfer-Encoding in an HTTP/1.0 request"

    @pytest.mark.parametrize("value", [b"gzip", b"identity", b"chunked, gzip", b"chunked, chunked"])
    def test_chunked_not_final_is_400(self, how, value):
        assert_rejected(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n\r\n0\r\n\r\n", how, 400)

    def test_chunked_twice_in_two_fields_is_400(self, how):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        assert_rejected(data, how, 400)

    @pytest.mark.parametrize("value", [b"gzip, chunked", b"deflate,chunked"])
    def test_unsupported_transfer_coding_is_501(self, how, value):
        error = assert_rejected(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n\r\n0\r\n\r\n", how, 501)
        assert error.detail.startswith("Transfer-Encoding ") and error.detail.endswith(" is not supported")


class TestRFC9112Section9_3Persistence:
    @pytest.mark.parametrize(
        "version, connection, keep_alive",
        [
            (b"1.1", None, True),
            (b"1.1", b"keep-alive", True),
            (b"1.1", b"close", False),
            (b"1.1", b"Close", False),
            (b"1.1", b"keep-alive, close", False),
            (b"1.0", None, False),
            (b"1.0", b"keep-alive", True),
            (b"1.0", b"Keep-Alive", True),
            (b"1.0", b"close", False),
        ],
    )
    def test_keep_alive_rules(self, how, version, connection, keep_alive):
        data = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
        if connection is not None:
            data += b"Connection: " + connection + b"\r\n"
        request = only_request(parse(data + b"\r\n", how))
        assert request.keep_alive is keep_alive

    def test_pipelined_requests_are_reported_in_order(self, how):
        data = (
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /d HTTP/1.0\r\n\r\n"
            b"GET /after-close HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        sink = parse(data, how)
        first, second, third, fourth = sink.requests
        assert [r.target for r in sink.requests] == [b"/a", b"/b", b"/c", b"/d"]
        assert sink.events == [
            ("request", first),
            ("complete", first),
            ("request", second),
            ("body", second, b"hi"),
            ("complete", second),
            ("request", third),
            ("body", third, b"abc"),
            ("complete", third),
            ("request", fourth),
            ("complete", fourth),
        ]
        assert [r.http_version for r in sink.requests] == ["1.1", "1.1", "1.1", "1.0"]

    def test_a_bad_request_after_good_ones_reports_the_good_ones_first(self, how):
        data = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
        error, sink = reject(data, how)
        assert error.status == 400
        assert error.detail == "Missing Host header"
        assert [r.target for r in sink.requests] == [b"/a"]
        assert sink.kinds() == ["request", "complete"]


VALID_INPUTS = [
    b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\n\r\n",
    b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n",
]


class TestTrailingGarbage:
    @pytest.mark.parametrize("data", VALID_INPUTS)
    def test_garbage_after_a_valid_request(self, data):
        expected = parse(data)
        sink = Recorder()
        parser = RequestParser(sink)
        with pytest.raises(ProtocolError) as info:
            parser.feed(data + GARBAGE)
        assert info.value.status == 400
        assert [(e[0],) + e[2:] for e in sink.events] == [(e[0],) + e[2:] for e in expected.events]
        assert [r.target for r in sink.requests] == [r.target for r in expected.requests]

    @pytest.mark.parametrize("data", VALID_INPUTS)
    def test_feeds_agree(self, data):
        results = []
        for how in FEEDS:
            sink = parse(data, how)
            results.append(
                [
                    (e[0], e[1].method, e[1].target, e[1].headers, e[1].keep_alive) + e[2:]
                    for e in sink.events
                ]
            )
        assert results[0] == results[1] == results[2]


class TestRFC9112Section9_6TearDown:
    @pytest.mark.parametrize(
        "first",
        [b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", b"GET /a HTTP/1.0\r\n\r\n"],
    )
    @pytest.mark.parametrize("after", [NEXT, GARBAGE, b"\r\n"])
    def test_nothing_after_a_closing_request_is_processed(self, how, first, after):
        sink = Recorder()
        parser = RequestParser(sink)
        assert _feed(parser, first + after, how) is None
        assert parser.feed(NEXT) is None
        assert [r.target for r in sink.requests] == [b"/a"]
        assert sink.kinds() == ["request", "complete"]
        assert parser.in_head is False


class TestRFC9110Section10_1_1Expect:
    def test_100_continue_in_http_1_1(self, how):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na"
        assert only_request(parse(data, how)).expect_continue is True

    def test_100_continue_is_case_insensitive(self, how):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\na"
        assert only_request(parse(data, how)).expect_continue is True

    def test_100_continue_is_ignored_in_http_1_0(self, how):
        data = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na"
        assert only_request(parse(data, how)).expect_continue is False

    def test_other_expectations_do_not_set_the_flag(self, how):
        data = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 1\r\n\r\na"
        assert only_request(parse(data, how)).expect_continue is False


class TestRFC9110Section7_8Upgrade:
    def test_websocket_upgrade_returns_the_offset_of_the_new_protocol(self):
        head = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        for how in ("whole", "bytewise"):
            sink = Recorder()
            parser = RequestParser(sink)
            rest = _feed(parser, head + b"\x81\x00frames", how)
            assert rest == b"\x81\x00frames"
            request = only_request(sink)
            assert request.upgrade == b"websocket"

    def test_websocket_upgrade_with_nothing_after(self):
        sink = Recorder()
        parser = RequestParser(sink)
        head = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
        assert parser.feed(head) == len(head)
        assert sink.requests[0].upgrade == b"websocket"

    H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"

    def test_an_upgrade_not_taken_is_ignored_and_the_connection_kept(self, how):
        request = only_request(parse(b"GET / HTTP/1.1\r\nHost: a\r\n" + self.H2C + b"\r\n", how))
        assert (request.keep_alive, request.upgrade) == (True, None)

    @pytest.mark.parametrize("method", [b"GET", b"HEAD", b"OPTIONS"])
    def test_h2c_is_taken_when_allowed_on_a_request_without_a_body(self, how, method):
        # --http auto in cleartext (io/h2.py upgrade_h2c answers as stream 1).
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        for framing in (b"", b"Content-Length: 0\r\n"):
            sink = Recorder()
            head = method + b" /x?q=1 HTTP/1.1\r\nHost: a\r\n" + framing + self.H2C + b"\r\n"
            rest = _feed(RequestParser(sink, h2c=True), head + preface, how)
            request = only_request(sink)
            assert (request.upgrade, request.raw_path, request.query_string) == (b"h2c", b"/x", b"q=1")
            assert rest == preface

    @pytest.mark.parametrize(
        "framing",
        [b"Content-Length: 2\r\n", b"Transfer-Encoding: chunked\r\n"],
    )
    def test_h2c_with_a_body_is_ignored_even_when_allowed(self, how, framing):
        wire = b"hi" if framing.startswith(b"Content") else b"2\r\nhi\r\n0\r\n\r\n"
        head = b"POST /echo HTTP/1.1\r\nHost: a\r\n" + framing + self.H2C + b"\r\n"
        sink = Recorder()
        assert _feed(RequestParser(sink, h2c=True), head + wire, how) is None
        request = only_request(sink)
        assert (request.upgrade, request.keep_alive, sink.body(request)) == (None, True, b"hi")

    def test_h2c_on_http_1_0_is_ignored(self, how):
        head = b"GET / HTTP/1.0\r\nHost: a\r\n" + self.H2C + b"\r\n"
        sink = Recorder()
        assert _feed(RequestParser(sink, h2c=True), head, how) is None
        assert only_request(sink).upgrade is None

    @pytest.mark.parametrize(
        "fields",
        [
            H2C,  # what curl --http2 sends on cleartext
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n",  # a WebSocket upgrade on a POST
            b"Connection: upgrade\r\nUpgrade: TLS/1.2\r\n",
        ],
    )
    @pytest.mark.parametrize(
        "framing, body, wire",
        [
            (b"Content-Length: 11\r\n", b"hello world", b"hello world"),
            (b"Transfer-Encoding: chunked\r\n", b"hello world", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            (b"Content-Length: 0\r\n", b"", b""),
        ],
    )
    def test_the_body_of_a_request_whose_upgrade_is_not_taken_is_delivered(self, how, fields, framing, body, wire):
        # Issue 9 finding c: llhttp skips the body of an upgrade request; it
        # reached the app empty, and a body in a later segment became a new request.
        head = b"POST /echo HTTP/1.1\r\nHost: a\r\n" + framing + fields + b"\r\n"
        sink = parse(head + wire, how)
        request = only_request(sink)
        assert (request.method, request.target, request.upgrade, request.keep_alive) == ("POST", b"/echo", None, True)
        assert sink.body(request) == body

    def test_the_body_may_come_in_a_later_feed(self):
        sink = Recorder()
        parser = RequestParser(sink)
        assert parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n" + self.H2C + b"\r\n") is None
        assert sink.kinds() == ["request"]
        assert parser.feed(b"hello world" + NEXT) is None
        assert sink.kinds() == ["request", "body", "complete", "request", "complete"]
        assert sink.body(sink.requests[0]) == b"hello world"
        assert sink.requests[1].target == b"/next"

    def test_a_closing_upgrade_request_still_ends_the_connection(self, how):
        head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n"
        request = only_request(parse(head + b"hi", how))  # pipelined: NEXT must not be reported
        assert request.keep_alive is False

    def test_limits_still_apply_to_the_body(self, how):
        head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + self.H2C + b"\r\n"
        error, sink = reject(head + b"10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", how, limit_request_body=8)
        assert error.status == 413
        assert sink.kinds()[0] == "request" and "complete" not in sink.kinds()

    def test_websocket_upgrade_then_an_ignored_one_on_a_later_request(self):
        # After an ignored upgrade the parser is a fresh one: a WebSocket
        # upgrade that follows still returns its offset in the caller's data.
        sink = Recorder()
        parser = RequestParser(sink)
        first = b"GET /a HTTP/1.1\r\nHost: a\r\n" + self.H2C + b"\r\n"
        ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        data = first + ws + b"\x81\x00"
        assert parser.feed(data) == len(first + ws)
        assert [(r.target, r.upgrade) for r in sink.requests] == [(b"/a", None), (b"/ws", b"websocket")]


# -- responses -------------------------------------------------------------


def req(method: str = "GET", version: str = "1.1", keep_alive: bool = True) -> Request:
    return Request(method, b"/", b"/", b"", version, [], keep_alive)


def head_lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n\r\n")
    return data[:-4].split(b"\r\n")


class TestRFC9112Section4StatusLine:
    def test_status_line_and_app_headers_in_order(self):
        head = encode_head(200, [(b"content-type", b"text/plain"), (b"X-Two", b"2"), (b"x-two", b"3")],
                           request=req(), keep_alive=True, body_length=5)
        assert head_lines(head.data) == [
            b"HTTP/1.1 200 OK",
            b"content-type: text/plain",
            b"X-Two: 2",
            b"x-two: 3",
            b"content-length: 5",
        ]

    def test_a_cached_plan_renders_each_extra_and_length_exactly(self):
        headers = ((b"content-type", b"text/plain"), (b"content-length", b"2"))
        plan = plan_response(200, headers, False, True, True, True)
        assert plan is plan_response(200, list(headers), False, True, True, True)
        base = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
        for extra in (b"", b"date: one\r\n", b"date: one\r\n", b"date: two\r\n", b""):
            assert plan.render(2, extra) == base + extra + b"\r\n"
        added = plan_response(200, ((b"content-type", b"text/plain"),), False, True, True, True)
        assert added.render(7, b"date: d\r\n") == (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\ndate: d\r\n\r\n"
        )
        assert added.render(12, b"") == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\n"

    def test_unknown_status_has_an_empty_reason(self):
        head = encode_head(599, [], request=req(), keep_alive=True, body_length=0)
        assert head_lines(head.data)[0] == b"HTTP/1.1 599 "

    def test_http_1_0_request_gets_an_http_1_1_status_line(self):
        head = encode_head(404, [], request=req(version="1.0", keep_alive=False), keep_alive=False, body_length=0)
        assert head_lines(head.data)[0] == b"HTTP/1.1 404 Not Found"

    @pytest.mark.parametrize("status", [99, 1000, "200", 200.0, None, True, 100, 101, 199])
    def test_invalid_status_is_rejected(self, status):
        with pytest.raises(InvalidResponse):
            encode_head(status, [], request=req(), keep_alive=True, body_length=0)

    def test_extra_bytes_come_last(self):
        extra = b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\nserver: corral\r\n"
        head = encode_head(200, [(b"x-a", b"1")], request=req(), keep_alive=True, body_length=2, extra=extra)
        assert head.data == (
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n"
            b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\nserver: corral\r\n\r\n"
        )


class TestRFC9112Section6ResponseFraming:
    def test_one_piece_body_gets_content_length(self):
        head = encode_head(200, [], request=req(), keep_alive=True, body_length=13)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n"
        assert (head.chunked, head.keep_alive, head.body_allowed, head.content_length) == (False, True, True, 13)

    def test_empty_one_piece_body_gets_content_length_0(self):
        head = encode_head(200, [], request=req(), keep_alive=True, body_length=0)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    def test_app_content_length_is_kept_and_not_doubled(self):
        head = encode_head(200, [(b"Content-Length", b"5")], request=req(), keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        assert (head.chunked, head.content_length) == (False, 5)

    def test_streaming_on_http_1_1_is_chunked(self):
        head = encode_head(200, [(b"content-type", b"text/plain")], request=req(), keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        assert (head.chunked, head.keep_alive, head.content_length) == (True, True, None)

    def test_app_transfer_encoding_is_replaced_by_ours(self):
        head = encode_head(200, [(b"transfer-encoding", b"chunked")], request=req(), keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        head = encode_head(200, [(b"transfer-encoding", b"chunked")], request=req(), keep_alive=True, body_length=3)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
        assert head.chunked is False

    @pytest.mark.parametrize(
        "headers",
        [
            [(b"content-length", b"10"), (b"content-length", b"3")],
            [(b"Content-Length", b"3"), (b"content-length", b"3")],
            [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")],
            [(b"transfer-encoding", b"chunked"), (b"Content-Length", b"3")],
            [(b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")],
        ],
    )
    @pytest.mark.parametrize("body_length", [3, None])
    def test_two_framing_fields_from_the_app_are_refused(self, headers, body_length):
        # Issue 9 finding b: both lines went on the wire and a client using
        # the first length read into the next response. The ASGI layer turns
        # InvalidResponse into a 500 before anything is sent, and closes.
        with pytest.raises(InvalidResponse, match="one body framing only"):
            encode_head(200, headers, request=req(), keep_alive=True, body_length=body_length)

    @pytest.mark.parametrize(
        "name", [b"keep-alive", b"Keep-Alive", b"proxy-connection", b"TE"]
    )
    def test_hop_by_hop_fields_from_the_app_are_dropped(self, name):
        # Issue 9 finding i: the server manages the connection, not the app.
        head = encode_head(200, [(name, b"timeout=99"), (b"x-a", b"1")], request=req(), keep_alive=True, body_length=2)
        assert head.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n"

    def test_upgrade_from_the_app_is_kept_for_426(self):
        head = encode_head(426, [(b"upgrade", b"h2c")], request=req(), keep_alive=True, body_length=0)
        assert b"upgrade: h2c\r\n" in head.data

    EXTRA = b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\nserver: corral\r\n"

    @pytest.mark.parametrize("body_length", [2, None])
    @pytest.mark.parametrize(
        "headers, kept",
        [
            ([(b"Date", b"Fri, 02 Jan 1970 00:00:00 GMT")], b"server: corral\r\n"),
            ([(b"server", b"app/1.0")], b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
            ([(b"SERVER", b"app/1.0"), (b"date", b"d")], b""),
        ],
    )
    def test_the_apps_date_and_server_replace_ours(self, headers, kept, body_length):
        # Issue 9 finding h: each was sent twice.
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        framing = b"content-length: 2\r\n" if body_length else b"transfer-encoding: chunked\r\n"
        for extra in (self.EXTRA, self.EXTRA, self.EXTRA.replace(b"Thu", b"Wed"), self.EXTRA):
            head = encode_head(200, headers, request=req(), keep_alive=True, body_length=body_length, extra=extra)
            expected_extra = kept.replace(b"Thu", b"Wed") if b"Wed" in extra else kept
            assert head.data == b"HTTP/1.1 200 OK\r\n" + lines + framing + expected_extra + b"\r\n"

    def test_streaming_on_http_1_0_is_close_delimited(self):
        request = req(version="1.0", keep_alive=True)
        head = encode_head(200, [], request=request, keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
        assert (head.chunked, head.keep_alive, head.content_length) == (False, False, None)

    def test_http_1_0_keep_alive_with_length(self):
        request = req(version="1.0", keep_alive=True)
        head = encode_head(200, [], request=request, keep_alive=True, body_length=2)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
        assert head.keep_alive is True

    def test_http_1_0_without_keep_alive(self):
        request = req(version="1.0", keep_alive=False)
        head = encode_head(200, [], request=request, keep_alive=False, body_length=2)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        assert head.keep_alive is False

    def test_connection_close_when_not_keep_alive(self):
        head = encode_head(200, [], request=req(keep_alive=False), keep_alive=False, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        assert (head.keep_alive, head.chunked) == (False, True)

    def test_app_connection_close_is_honoured_once(self):
        head = encode_head(200, [(b"Connection", b"close")], request=req(), keep_alive=True, body_length=0)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        assert head.keep_alive is False

    def test_app_connection_keep_alive_cannot_override_a_close(self):
        head = encode_head(200, [(b"connection", b"keep-alive")], request=req(keep_alive=False), keep_alive=False,
                           body_length=0)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        assert head.keep_alive is False

    def test_head_has_no_body_framing_but_keeps_the_length(self):
        request = req(method="HEAD")
        head = encode_head(200, [], request=request, keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\n\r\n"
        assert (head.chunked, head.body_allowed, head.keep_alive) == (False, False, True)
        # The app gave the GET body in one piece: same Content-Length as GET.
        head = encode_head(200, [], request=request, keep_alive=True, body_length=13)
        assert head.data == b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n"
        assert head.body_allowed is False
        # An app that already strips the body for HEAD: no made-up length 0.
        head = encode_head(200, [], request=request, keep_alive=True, body_length=0)
        assert head.data == b"HTTP/1.1 200 OK\r\n\r\n"

    def test_head_on_http_1_0_streaming_stays_alive(self):
        request = req(method="HEAD", version="1.0", keep_alive=True)
        head = encode_head(200, [], request=request, keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\n\r\n"

    @pytest.mark.parametrize("status", [204, 304])
    @pytest.mark.parametrize("body_length", [None, 0])
    def test_no_body_framing_for_204_and_304(self, status, body_length):
        head = encode_head(status, [], request=req(), keep_alive=True, body_length=body_length)
        assert head_lines(head.data) == [head_lines(head.data)[0]]
        assert (head.chunked, head.body_allowed, head.content_length) == (False, False, None)

    def test_no_content_length_on_204_even_from_the_app(self):
        head = encode_head(204, [(b"content-length", b"0"), (b"x-a", b"1")], request=req(), keep_alive=True,
                           body_length=0)
        assert head.data == b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"
        assert head.content_length is None

    def test_304_keeps_the_app_content_length(self):
        head = encode_head(304, [(b"content-length", b"42")], request=req(), keep_alive=True, body_length=0)
        assert head.data == b"HTTP/1.1 304 Not Modified\r\ncontent-length: 42\r\n\r\n"
        assert head.body_allowed is False

    def test_204_on_kept_alive_http_1_0(self):
        head = encode_head(204, [], request=req(version="1.0"), keep_alive=True, body_length=None)
        assert head.data == b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n"
        assert head.keep_alive is True


class TestRFC9110Section5ResponseFieldValidity:
    @pytest.mark.parametrize(
        "value",
        [b"a\r\nset-cookie: x", b"a\rb", b"a\nb", b"a\x00b", b"\r\n"],
        ids=["CRLF", "CR", "LF", "NUL", "only-CRLF"],
    )
    def test_injection_in_a_value_is_rejected(self, value):
        with pytest.raises(InvalidResponse):
            encode_head(200, [(b"x-a", b"1"), (b"x-evil", value)], request=req(), keep_alive=True, body_length=0)

    @pytest.mark.parametrize(
        "name",
        [b"x evil", b"x\r\nset-cookie", b"x:y", b"", b"x\x00", b"caf\xe9", "x-str", b"x(y)"],
    )
    def test_bad_names_are_rejected(self, name):
        with pytest.raises(InvalidResponse):
            encode_head(200, [(name, b"1")], request=req(), keep_alive=True, body_length=0)

    @pytest.mark.parametrize("value", ["text", 5, None])
    def test_values_must_be_bytes(self, value):
        with pytest.raises(InvalidResponse):
            encode_head(200, [(b"x-a", value)], request=req(), keep_alive=True, body_length=0)
        with pytest.raises(InvalidResponse):
            encode_head(200, [(b"connection", value)], request=req(), keep_alive=True, body_length=0)

    @pytest.mark.parametrize("value", [b"-5", b"abc", b"1_0", b" 5", b"5 ", b"", b"0x5", "5"])
    def test_invalid_app_content_length_is_rejected(self, value):
        with pytest.raises(InvalidResponse):
            encode_head(200, [(b"content-length", value)], request=req(), keep_alive=True, body_length=None)

    def test_values_with_obs_text_and_tabs_are_sent(self):
        head = encode_head(200, [(b"x-a", b"caf\xe9\tok")], request=req(), keep_alive=True, body_length=0)
        assert head_lines(head.data)[1] == b"x-a: caf\xe9\tok"


class TestResponsePlanCache:
    """encode_head caches a plan per (status, headers, request kind): the
    cache must never change an answer."""

    def test_same_headers_different_lengths(self):
        headers = [(b"content-type", b"text/plain")]
        first = encode_head(200, headers, request=req(), keep_alive=True, body_length=5)
        second = encode_head(200, headers, request=req(), keep_alive=True, body_length=12345)
        assert first.data == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n"
        assert second.data == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12345\r\n\r\n"
        assert (first.content_length, second.content_length) == (5, 12345)

    def test_request_kind_and_keep_alive_are_part_of_the_key(self):
        headers = ((b"x-a", b"1"),)
        get = encode_head(200, headers, request=req(), keep_alive=True, body_length=None)
        head = encode_head(200, headers, request=req(method="HEAD"), keep_alive=True, body_length=None)
        close = encode_head(200, headers, request=req(), keep_alive=False, body_length=None)
        old = encode_head(200, headers, request=req(version="1.0"), keep_alive=True, body_length=None)
        assert get.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        assert head.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\n"
        assert close.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        assert old.data == b"HTTP/1.1 200 OK\r\nx-a: 1\r\nconnection: close\r\n\r\n"
        assert (get.chunked, head.chunked, close.keep_alive, old.keep_alive) == (True, False, False, False)

    @pytest.mark.parametrize(
        "make",
        [list, tuple, iter, lambda h: (pair for pair in h), lambda h: [list(pair) for pair in h]],
        ids=["list", "tuple", "iterator", "generator", "list-of-lists"],
    )
    def test_any_iterable_of_pairs(self, make):
        headers = [(b"x-a", b"1"), (b"x-b", b"2")]
        for _ in range(2):  # uncached, then cached
            head = encode_head(201, make(headers), request=req(), keep_alive=True, body_length=1)
            assert head.data == b"HTTP/1.1 201 Created\r\nx-a: 1\r\nx-b: 2\r\ncontent-length: 1\r\n\r\n"

    def test_a_cached_status_does_not_admit_a_float(self):
        encode_head(200, [], request=req(), keep_alive=True, body_length=0)
        with pytest.raises(InvalidResponse):
            encode_head(200.0, [], request=req(), keep_alive=True, body_length=0)

    def test_invalid_headers_are_rejected_every_time(self):
        for _ in range(2):
            with pytest.raises(InvalidResponse):
                encode_head(200, ((b"x-a", b"a\r\nb"),), request=req(), keep_alive=True, body_length=0)


class TestChunksAndErrorResponses:
    def test_encode_chunk(self):
        assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
        assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
        assert LAST_CHUNK == b"0\r\n\r\n"

    def test_continue(self):
        assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"

    def test_error_response_is_short_plain_text_and_closes(self):
        data = error_response(431, "Request header fields too large", b"server: corral\r\n")
        assert data == (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: 32\r\n"
            b"connection: close\r\n"
            b"server: corral\r\n"
            b"\r\n"
            b"Request header fields too large\n"
        )

    def test_error_response_without_detail_uses_the_phrase(self):
        data = error_response(500)
        assert data.endswith(b"\r\n\r\nInternal Server Error\n")
        assert b"content-length: 22\r\n" in data


def test_proto_imports_no_io():
    import ast
    import pathlib

    import corral.proto.h1 as module

    tree = ast.parse(pathlib.Path(module.__file__).with_name("h1.py").read_text())  # the source, also when compiled
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert not imported & {"asyncio", "socket", "selectors", "uvloop"}
    assert not any(name.startswith("..") for name in imported)


def test_bytes_after_a_closing_request_are_ignored_and_noted():
    events = []

    class Sink:
        def on_request(self, request):
            events.append(request.target)

        def on_body(self, request, chunk):
            pass

        def on_request_complete(self, request):
            events.append("complete")

    from corral.proto.h1 import RequestParser

    parser = RequestParser(Sink())
    assert parser.feed(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") is None
    assert not parser.data_after_close
    assert parser.feed(b"GET /b HTTP/1.1\r\n") is None
    assert events == [b"/a", "complete"] and parser.data_after_close
