"""Client identity from forwarding headers, without I/O: RFC 7239 ``Forwarded``
and ``X-Forwarded-For`` / ``-Proto`` / ``-Host``.

Theory of operation
-------------------
Each proxy that forwards a request appends what it knows about the hop it
received the request from: that hop's address (``for``), the scheme it was
spoken to with (``proto``), the Host it asked for (``host``). Read right to
left, the list is the chain of hops, nearest first. Only what a *trusted*
proxy wrote can be believed, so:

1. nothing is read unless the connection's peer is trusted (a UNIX socket
   peer always is);
2. the walk goes right to left while the hop is a trusted address; the first
   hop that is not is the client (when every hop is trusted, the leftmost);
3. the scheme and Host are those recorded for that same hop: the same
   ``Forwarded`` element, or the same position of ``X-Forwarded-Proto`` /
   ``-Host`` when those lists line up with ``X-Forwarded-For`` (else their
   rightmost value, as uvicorn reads them).

Everything left of the client's hop was written by the client and is never
looked at, so garbage there changes nothing. A malformed hop *reached* by
the walk makes the whole field be ignored: the request keeps the
connection's own identity. When a ``Forwarded`` field is present the
``X-Forwarded-*`` fields are not read. ``unknown`` and obfuscated
identifiers (``_hidden``) are never trusted: the walk stops there and the
client is named by that identifier.

Cost: the HTTP parser flags a request that carries any of these fields
while it looks at header names anyway (``proto/h1.py``); only such requests
get here, and the trust decision for a peer address is cached, as is the
walk's answer for a set of forwarding fields already seen.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from .h1 import _VALID_HOST

__all__ = ["TrustedPeers", "Forwarding", "Identity", "parse_node", "parse_forwarded"]

FORWARDING_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
# X-Forwarded-Proto / Forwarded proto= values honoured, and what an HTTP request's scheme becomes.
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+").fullmatch
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Unquoted values: a token, leniently with the characters of a bare IPv6 node.
_VALUE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+")
_CACHE_SIZE = 4096
# Walks remembered, and the largest fields remembered (bytes of values): at most ~0.5 MiB.
_WALK_CACHE_SIZE = 1024
_WALK_KEY_MAX = 512


class TrustedPeers:
    """A list of trusted addresses: IPs, CIDR networks, or ``*`` for every peer.

    ``host in peers`` for an address string (a peer's IP, a hop's node);
    ``None`` (a UNIX socket peer) is always trusted. Answers are cached per
    address, so a peer costs one check per worker, not one per request."""

    def __init__(self, text: str) -> None:
        self.everyone = False
        self.networks: list = []
        self._cache: dict[str, bool] = {}
        items = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            if item == "*":
                self.everyone = True
            else:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address, a CIDR network or *") from None
            items.append(item)
        self.text = ",".join(items)

    def __contains__(self, host) -> bool:
        if host is None:
            return True
        known = self._cache.get(host)
        if known is None:
            known = self._check(host)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = known
        return known

    def _check(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # unknown, obfuscated, or not an address
        if address.version == 6 and address.ipv4_mapped is not None:
            if any(address.ipv4_mapped in network for network in self.networks):
                return True
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"TrustedPeers({self.text!r})"


class Identity(NamedTuple):
    """Who the request came from, as the trusted proxies tell it."""

    client: tuple | None  # (host, port); port 0 when the proxy gave none
    scheme: str  # "http" or "https"
    host: bytes | None  # the forwarded Host, only with forwarded_host


def parse_port(text: str) -> int | None:
    if text.isdigit() and len(text) <= 5 and text.isascii():
        port = int(text)
        return port if port <= 65535 else None
    if _OBFUSCATED(text):
        return 0
    return None


def parse_node(text: str) -> tuple[str, int] | None:
    """A hop as written in X-Forwarded-For or Forwarded ``for=``:
    ``IPv4[:port]``, ``[IPv6][:port]``, a bare IPv6, ``unknown`` or an
    obfuscated ``_name``. Returns (host, port), port 0 if none; None when
    malformed. IP hosts come back in their normal form."""
    port = 0
    if text[:1] == "[":
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if rest[0] != ":" or (port := parse_port(rest[1:])) is None:
                return None
        try:
            return str(ipaddress.IPv6Address(host)), port
        except ValueError:
            return None
    colons = text.count(":")
    if colons == 1:
        text, _, rest = text.partition(":")
        if (port := parse_port(rest)) is None:
            return None
    elif colons > 1:
        try:
            return str(ipaddress.IPv6Address(text)), 0
        except ValueError:
            return None
    if text.lower() == "unknown":
        return "unknown", port
    if _OBFUSCATED(text):
        return text, port
    try:
        return str(ipaddress.IPv4Address(text)), port
    except ValueError:
        return None


def parse_forwarded(text: str) -> list[dict | None]:
    """The elements of a ``Forwarded`` field value (RFC 7239 §4), left to
    right: a dict of lower-cased parameter names to values, or None for an
    element that is malformed (parsing resumes after its next comma)."""
    elements: list[dict | None] = []
    element: dict | None = {}
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == ",":
            elements.append(element)
            element = {}
            i += 1
            continue
        if char in " \t;" or element is None:
            i += 1
            continue
        match = _TOKEN.match(text, i)
        if match is None or match.end() >= n or text[match.end()] != "=":
            element, i = None, _skip(text, i)
            continue
        name = match.group().lower()
        i = match.end() + 1
        if i < n and text[i] == '"':
            value, end = _quoted(text, i)
        else:
            found = _VALUE.match(text, i)
            value, end = (found.group(), found.end()) if found else (None, i)
        if value is None or name in element or (end < n and text[end] not in " \t;,"):
            # RFC 7239 §4: a parameter occurs at most once per element.
            element, i = None, _skip(text, i)
            continue
        element[name] = value
        i = end
    elements.append(element)
    return [e for e in elements if e != {}]


def _skip(text: str, i: int) -> int:
    comma = text.find(",", i)
    return len(text) if comma < 0 else comma


def _quoted(text: str, i: int) -> tuple[str | None, int]:
    """The quoted-string starting at text[i] == '"': (value, index after it)."""
    out = []
    i += 1
    n = len(text)
    while i < n:
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            i += 1
            if i >= n:
                break
            char = text[i]
        out.append(char)
        i += 1
    return None, i


def _valid_host(value: str) -> bytes | None:
    try:
        host = value.encode("ascii")
    except UnicodeEncodeError:
        return None
    return host if host and _VALID_HOST(host) else None


class Forwarding:
    """What one worker needs to read forwarding fields: its trusted peers and
    whether the forwarded Host is honoured (``--forwarded-host``)."""

    def __init__(self, trusted: TrustedPeers, forwarded_host: bool = False) -> None:
        self.trusted = trusted
        self.forwarded_host = forwarded_host
        # The walk's answer per distinct set of forwarding fields (a proxy
        # sends the same ones for every request of a client): (client,
        # scheme, host), each None to keep the connection's, or None to
        # ignore the fields. Bounded: small fields only, cleared when full.
        self._walks: dict[tuple, tuple | None] = {}

    def resolve(self, headers, client, scheme: str) -> Identity | None:
        """The identity of a request whose ``headers`` carry forwarding fields,
        received on a connection from ``client`` ((host, port), or None for a
        UNIX socket) with ``scheme``. None when nothing is to be changed: the
        peer is not trusted, or the fields are unusable."""
        if client is not None:
            trusted = self.trusted._cache.get(client[0])  # TrustedPeers' cache, without a method call
            if not trusted and (trusted is not None or client[0] not in self.trusted):
                return None
        fields = tuple([field for field in headers if field[0] in FORWARDING_HEADERS])
        walks = self._walks
        try:
            walk = walks[fields]
        except KeyError:
            walk = self._walk(fields)
            if walk is not None and walk[0] is not None and walk[1] is not None:
                walk = Identity(*walk)  # complete: the same answer whatever the peer
            if sum(len(value) for _, value in fields) <= _WALK_KEY_MAX:
                if len(walks) >= _WALK_CACHE_SIZE:
                    walks.clear()
                walks[fields] = walk
        if walk is None or type(walk) is Identity:
            return walk
        hop, proto, host = walk
        return Identity(hop or client, proto or scheme, host)

    def _walk(self, fields) -> tuple | None:
        forwarded = []
        xff = []
        xfp = []
        xfh = []
        for name, value in fields:
            if name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                xfp.append(value)
            else:
                xfh.append(value)
        if forwarded:
            return self._forwarded(forwarded)
        return self._x_forwarded(xff, xfp, xfh)

    def _forwarded(self, fields) -> tuple | None:
        client = scheme = None
        elements: list = []
        for field in fields:  # one field line after another, each parsed on its own
            elements += parse_forwarded(field.decode("latin-1"))
        if not elements:
            return None
        trusted = self.trusted
        for index in range(len(elements) - 1, -1, -1):
            element = elements[index]
            if element is None:
                return None  # a malformed hop reached: ignore the field
            node = element.get("for")
            if node is None:
                break  # the proxy did not say who: the client stays the peer
            hop = parse_node(node)
            if hop is None:
                return None
            if index == 0 or hop[0] not in trusted:
                client = hop
                break
        proto = element.get("proto")
        if proto is not None:
            scheme = SCHEMES.get(proto.lower())
        host = None
        if self.forwarded_host and "host" in element:
            host = _valid_host(element["host"])
        return client, scheme, host

    def _x_forwarded(self, xff, xfp, xfh) -> tuple | None:
        client = scheme = None
        hops = _list(xff)
        index = -1
        if hops:
            trusted = self.trusted
            for index in range(len(hops) - 1, -1, -1):
                hop = parse_node(hops[index])
                if hop is None:
                    return None  # a malformed hop reached: ignore the field
                if index == 0 or hop[0] not in trusted:
                    client = hop
                    break
        protos = _list(xfp)
        if protos:
            proto = protos[index] if len(protos) == len(hops) else protos[-1]
            scheme = SCHEMES.get(proto.lower())
        host = None
        if self.forwarded_host:
            hosts = _list(xfh)
            if hosts:
                host = _valid_host(hosts[index] if len(hosts) == len(hops) else hosts[-1])
        return client, scheme, host


def _list(fields) -> list[str]:
    """The items of comma-separated field lines, in order; empty items dropped."""
    items = []
    for field in fields:
        for item in field.decode("latin-1").split(","):
            item = item.strip(" \t")
            if item:
                items.append(item)
    return items
