"""Hypothesis strategies for HTTP/1.1 request bytes, shared by the property
tests, the differential test against h11 and the fuzz targets' seeds.

``requests()`` builds well-formed requests (``Spec``: the bytes and what
they must parse to); ``splits(data)`` cuts bytes at arbitrary points.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# A bounded, seeded slice in `make test` (the same examples on every run);
# `make fuzz` sets CORRAL_FUZZ_EXAMPLES and runs that many, at random.
EXAMPLES = int(os.environ.get("CORRAL_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` seeded examples, or the fuzz run's."""
    return settings(
        max_examples=EXAMPLES or examples,
        derandomize=not EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Methods llhttp parses; the others are answered 501 (see proto/h1._invalid_method).
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "PURGE", "QUERY"]
PATH_CHARS = b"abcXYZ019-._~!$&'()*+,;=:@/%"
VCHAR = bytes(range(0x21, 0x7F))
FIELD_VCHAR = VCHAR + bytes(range(0x80, 0x100))

token = st.binary(min_size=1, max_size=12).map(lambda b: bytes(TCHAR[x % len(TCHAR)] for x in b))
path = st.binary(min_size=0, max_size=20).map(lambda b: b"/" + bytes(PATH_CHARS[x % len(PATH_CHARS)] for x in b))
query = st.one_of(st.just(b""), st.binary(max_size=12).map(lambda b: b"?" + bytes(PATH_CHARS[x % len(PATH_CHARS)] for x in b)))
# A field value: visible characters with inner spaces and tabs, none at the ends.
field_value = st.lists(
    st.binary(min_size=1, max_size=8).map(lambda b: bytes(FIELD_VCHAR[x % len(FIELD_VCHAR)] for x in b)),
    max_size=4,
).map(b" ".join)
# Names the parser treats specially are left to the framing and Host choices.
RESERVED = {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect", b"te",
            b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
            b"x-forwarded-prefix", b"x-real-ip", b"trailer", b"keep-alive"}
field_name = token.filter(lambda n: n.lower() not in RESERVED)
host = st.sampled_from([b"a", b"example.com", b"example.com:8080", b"127.0.0.1", b"[::1]:80", b"h.example"])


class Spec:
    """A well-formed request and how it must parse."""

    def __init__(self, method, target, version, headers, body, framing, chunks, keep_alive):
        self.method: str = method
        self.target: bytes = target
        self.version: str = version
        self.headers: list[tuple[bytes, bytes]] = headers  # as sent (names in their case)
        self.body: bytes = body
        self.framing: str = framing  # "none", "length" or "chunked"
        self.chunks: list[bytes] = chunks
        self.keep_alive: bool = keep_alive

    def encode(self) -> bytes:
        lines = [b"%s %s HTTP/%s" % (self.method.encode(), self.target, self.version.encode())]
        lines += [name + b": " + value for name, value in self.headers]
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if self.framing == "chunked":
            return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in self.chunks if c) + b"0\r\n\r\n"
        return head + self.body

    def __repr__(self) -> str:
        return f"Spec({self.encode()!r})"


@st.composite
def requests(draw, keep_alive: bool | None = None) -> Spec:
    method = draw(st.sampled_from(METHODS))
    target = draw(path) + draw(query)
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    headers = [(b"Host", draw(host))] if version == "1.1" or draw(st.booleans()) else []
    headers += draw(st.lists(st.tuples(field_name, field_value), max_size=5))
    if keep_alive is None:
        keep_alive = draw(st.booleans())
    if version == "1.1" and not keep_alive:
        headers.append((b"Connection", b"close"))
    elif version == "1.0" and keep_alive:
        headers.append((b"Connection", b"keep-alive"))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == "1.1" else ["none", "length"]))
    chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4)) if framing != "none" else []
    body = b"".join(chunks)
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    order = draw(st.permutations(range(len(headers))))
    headers = [headers[i] for i in order]
    return Spec(method, target, version, headers, body, framing, chunks, keep_alive)


def splits(data: bytes):
    """A strategy for ``data`` cut into pieces at arbitrary points (never an
    empty piece: a transport never reports one)."""
    return st.lists(st.integers(0, len(data)), max_size=8).map(
        lambda cuts: [data[a:b] for a, b in zip([0] + sorted(cuts), sorted(cuts) + [len(data)]) if b > a] or [data]
    )
