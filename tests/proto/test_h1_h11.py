"""Differential test: corral.proto.h1 against h11 on the same request bytes.

Both parsers read the first request of some bytes (``h1_views``): method,
target, headers, body, or the status they refuse it with. Well-formed
requests (``h1_strategies.requests``) must parse the same in both. Each
entry of ``MUTATIONS`` puts one defect into one place of such a request,
the kinds the adversarial sweep of issue 9 tried; ``AGREE`` means both must
still read it the same, any other label is a disagreement we keep on
purpose, with corral's answer pinned:

* ``stricter: bare LF`` - a line ending in LF alone is 400 (h11 accepts
  it, RFC 9112 §2.2 allows both; an LF-only line is a smuggling vector
  between a proxy and a server that disagree).
* ``stricter: obs-fold`` - a folded field line is 400 (RFC 9112 §5.2
  allows it; h11 unfolds). Includes a folded Transfer-Encoding.
* ``stricter: duplicate Content-Length`` - even with equal values, 400
  (h11 merges equal ones, RFC 9110 §8.6 allows either).
* ``stricter: Content-Length with Transfer-Encoding`` - 400 at once
  (RFC 9112 §6.1 allows it; h11 ignores the length).
* ``stricter: chunked not final or twice`` - 400 as RFC 9112 §6.3 says
  (h11 answers 501).
* ``stricter: DEL in a value`` - 400: DEL is not a field-vchar (RFC 9110
  §5.5); h11 lets it through.
* ``stricter: tab after chunked`` - llhttp does not take ``chunked`` followed
  by a tab (legal OWS) as chunked: 400 once the head is read, before any
  body byte reaches the app. h11 strips the tab. Spaces are fine in both.
* ``stricter: fragment`` - a ``#`` in the target is 400: no form of
  request-target has a fragment (RFC 9112 §3.2). h11 passes it on.
* ``stricter: target form`` - asterisk-form other than for OPTIONS and
  authority-form other than for CONNECT are 400 (RFC 9112 §3.2.3, §3.2.4).
* ``stricter: invalid Host`` - a Host that is not uri-host[:port] is 400
  (RFC 9112 §3.2); h11 does not look at its value.
* ``stricter: version`` - any major version but 1 (HTTP/0.x, 2.0, 2.1,
  3.1, 9.9) on an HTTP/1 request line is 505; h11 reads any ``HTTP/d.d``.
  HTTP/1.2 is served as HTTP/1.1 by both (RFC 9110 §2.5).
* ``limited: method table`` - llhttp parses a fixed list of methods: any
  other token (``FOO``, lower-case ``post``) is 501, never passed to the
  app; h11 passes any token. CONNECT is 501 (not supported).
* ``lenient: absolute-form host`` - the authority of an absolute-form
  target replaces the Host field (RFC 9112 §3.2.2); h11 leaves Host as is.
* ``lenient: repeated spaces`` - llhttp skips any run of spaces around the
  target (``GET  / HTTP/1.1``); h11 answers 400. This is issue 9's finding
  j, first half, NOT fixed: llhttp gives no hook to see those spaces, and
  scanning every read for them would cost every request.

h11 and llhttp agree on everything else the table tries: whitespace before
the colon, a bare CR, NUL and DEL in values, multiple Host, a missing Host,
``+`` or ``-`` in Content-Length, an unknown coding before chunked (501),
chunk extensions, trailers, ``Expect``, an Upgrade that is not taken.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h1_strategies import fuzz, requests
from h1_views import corral_view, h11_view

AGREE = "agree"
BAD = ("error", 400)
ACCEPTED = "accepted"  # corral reads the request (compared field by field below)

# (label, where, old, new, corral's answer when it disagrees with h11)
# where: "line" = the request line, "head" = the field lines, "method" = the method.
MUTATIONS = [
    (AGREE, "line", b" HTTP/1.1\r\n", b" HTTP/1.2\r\n", None),
    (AGREE, "line", b"HTTP/1.", b"http/1.", None),
    (AGREE, "line", b"HTTP/1.1", b"HTTP/1.10", None),
    (AGREE, "line", b" /", b"\t/", None),
    (AGREE, "line", b" /", b" /\x7f", None),
    (AGREE, "line", b" /", b" /\xc3\xa9", None),
    (AGREE, "line", b" /", b" //", None),
    (AGREE, "line", b"\r\n", b"\rX\r\n", None),
    (AGREE, "head", b": ", b":", None),
    (AGREE, "head", b": ", b" : ", None),
    (AGREE, "head", b": ", b":\t", None),
    (AGREE, "head", b"\r\n", b"  \r\n", None),
    (AGREE, "head", b"Connection: close", b"Connection: close\t", None),
    (AGREE, "head", b"\r\n", b"\rX: y\r\n", None),
    (AGREE, "head", b"\r\n", b"\x00\r\n", None),
    (AGREE, "head", b"\r\n", b"\r\nHost: b\r\n", None),
    (AGREE, "head", b"Host: ", b"X-Host: ", None),
    (AGREE, "head", b"Host: ", b"Host : ", None),
    (AGREE, "head", b"Content-Length: ", b"Content-Length: +", None),
    (AGREE, "head", b"Content-Length: ", b"Content-Length: -", None),
    (AGREE, "head", b"Content-Length: ", b"Content-Length: 00", None),
    (AGREE, "head", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", None),
    (AGREE, "end", b"0\r\n\r\n", b"0;ext=1\r\n\r\n", None),
    (AGREE, "end", b"0\r\n\r\n", b"000\r\n\r\n", None),
    (AGREE, "end", b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", None),
    (AGREE, "head", b"\r\n", b"\r\nExpect: 100-continue\r\n", None),
    (AGREE, "head", b"\r\n", b"\r\n\x01Bad: 1\r\n", None),
    (AGREE, "head", b"\r\n", b"\r\nX-Empty:\r\n", None),
    (AGREE, "head", b"\r\n", b"\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n", None),
    ("stricter: bare LF", "line", b"\r\n", b"\n", BAD),
    ("stricter: bare LF", "head", b"\r\n", b"\n", BAD),
    ("stricter: obs-fold", "head", b"\r\n", b"\r\n folded\r\n", BAD),
    ("stricter: obs-fold", "head", b"Transfer-Encoding: chunked", b"Transfer-Encoding:\r\n chunked", BAD),
    ("stricter: duplicate Content-Length", "head", b"Content-Length: ", b"Content-Length: 0\r\nContent-Length: ", BAD),
    ("stricter: Content-Length with Transfer-Encoding", "head", b"Transfer-Encoding: chunked",
     b"Content-Length: 5\r\nTransfer-Encoding: chunked", BAD),
    ("stricter: chunked not final or twice", "head", b"Transfer-Encoding: chunked", b"Transfer-Encoding: xchunked", BAD),
    ("stricter: chunked not final or twice", "head", b"Transfer-Encoding: chunked",
     b"Transfer-Encoding: chunked, chunked", BAD),
    ("stricter: DEL in a value", "head", b"\r\n", b"\x7f\r\n", BAD),
    ("stricter: tab after chunked", "head", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked\t", BAD),
    ("stricter: fragment", "line", b" /", b" /#frag/", BAD),
    ("stricter: fragment", "line", b" HTTP/", b"#f HTTP/", BAD),
    ("stricter: target form", "line", b" /", b" h.example:80 x/", BAD),
    ("stricter: invalid Host", "head", b"Host: ", b"Host: a b;", BAD),
    ("stricter: version", "line", b"HTTP/1.1", b"HTTP/2.0", ("error", 505)),
    ("stricter: version", "line", b"HTTP/1.1", b"HTTP/3.0", ("error", 505)),
    ("stricter: version", "line", b"HTTP/1.", b"HTTP/0.", ("error", 505)),
    ("stricter: version", "line", b"HTTP/1.1", b"HTTP/3.1", ("error", 505)),  # issue 19 finding 16: was served as 1.1
    ("limited: method table", "method", None, b"FOO", ("error", 501)),
    ("limited: method table", "method", None, b"post", ("error", 501)),
    ("limited: method table", "method", None, b"CONNECT", ("error", 501)),
    ("lenient: absolute-form host", "line", b" /", b" http://h.example/", ACCEPTED),
    ("lenient: repeated spaces", "line", b" /", b"  /", ACCEPTED),
    ("lenient: repeated spaces", "line", b" HTTP/", b"  HTTP/", ACCEPTED),
]


def mutate(data: bytes, where: str, old: bytes | None, new: bytes) -> bytes | None:
    """``data`` with ``old`` replaced by ``new`` once, in the named part; None
    when that part has no ``old``."""
    line_end = data.index(b"\r\n") + 2
    head_end = data.index(b"\r\n\r\n") + 2  # the field lines end with their own CRLF
    if where == "method":
        return new + data[data.index(b" "):]
    if where == "end":  # the last chunk of a chunked body
        if b"Transfer-Encoding: chunked" not in data[:head_end] or not data.endswith(old):
            return None
        return data[: -len(old)] + new
    start, end = (0, line_end) if where == "line" else (line_end, head_end)
    at = data.find(old, start, end)
    if at < 0 or at + len(old) > end:
        return None
    return data[:at] + new + data[at + len(old):]


@fuzz(300)
@given(requests())
def test_well_formed_requests_parse_the_same(spec):
    data = spec.encode()
    ours = corral_view([data])
    assert ours == h11_view(data)
    assert ours == ("request", spec.method, spec.target, [(n.lower(), v) for n, v in spec.headers], spec.body)


@pytest.mark.parametrize(
    "label, where, old, new, answer", MUTATIONS, ids=[f"{m[0]}:{m[3]!r}" for m in MUTATIONS]
)
@fuzz(15)
@given(spec=requests())
def test_one_defect(spec, label, where, old, new, answer):
    data = mutate(spec.encode(), where, old, new)
    if data is None:
        return  # this request has no such part (no body framing, no Host, ...)
    ours = corral_view([data])
    theirs = h11_view(data)
    if label == AGREE:
        assert ours == theirs
        return
    if answer == ACCEPTED:
        assert ours[0] == "request"
        if label == "lenient: absolute-form host":
            assert (b"host", b"h.example") in ours[3]
            assert ours[:3] + (ours[4],) == theirs[:3] + (theirs[4],)
        elif label == "lenient: minor version":
            assert ours == theirs
        else:
            assert theirs == BAD
        return
    if label == "stricter: target form" and spec.method == "CONNECT":
        return
    assert ours == answer
