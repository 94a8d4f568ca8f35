"""The PROXY protocol, versions 1 and 2 (haproxy's proxy-protocol.txt), without I/O.

Theory of operation
-------------------
A TCP-mode load balancer (haproxy ``send-proxy``/``send-proxy-v2``, AWS NLB)
opens each connection with one header that names the client it accepted:
a text line in v1 (``PROXY TCP4 src dst sport dport\\r\\n``), a binary block
in v2 (12-byte signature, version/command, family, length, addresses, then
TLVs: TLS version, cipher, SNI, unique ID ...). The HTTP bytes follow.

``ProxyParser(versions, required).feed(data)`` buffers bytes until it can
decide; it returns None while it needs more, then ``(info, rest)``: the
``ProxyInfo`` (None when no header was sent and none was required) and the
bytes after the header, which belong to HTTP. A bad header raises
``ProxyHeaderError``; the connection must then be closed. It decides as soon
as the bytes cannot be the start of an accepted header (so a plain HTTP
request is recognised after its first byte or two), and never buffers more
than one bounded header: 107 bytes for v1, 16 + ``V2_MAX_LENGTH`` for v2.

A header with the LOCAL command (v2: health checks from the proxy itself),
``UNKNOWN`` (v1) or a family other than TCP/UDP over IPv4/IPv6 leaves the
connection's own addresses in place (``info.client`` is None).

This module imports nothing of asyncio or sockets.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["ProxyHeaderError", "ProxyInfo", "ProxyParser", "V1_MAX_LENGTH", "V2_MAX_LENGTH"]

V1_SIGNATURE = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_LENGTH = 107  # the spec's bound, CRLF included
V2_MAX_LENGTH = 4096  # bytes after the 16-byte v2 header: addresses and TLVs

# v2 TLV types (proxy-protocol.txt §2.2)
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04
UNIQUE_ID_MAX = 128

# ASGI's tls extension wants numbers where the proxy sends names.
TLS_VERSIONS = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
CIPHER_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
    "ECDHE-RSA-CHACHA20-POLY1305": 0xCCA8,
}


class ProxyHeaderError(Exception):
    """A missing, malformed or oversized PROXY header: close the connection."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ProxyInfo:
    """What a PROXY header said.

    ``client`` and ``server`` are (host, port), or None to keep the
    connection's own. ``tls`` holds the v2 SSL TLV when the client spoke TLS
    to the proxy: ``version``, ``cipher``, ``cn``, ``sig_alg``, ``key_alg``
    (each only if sent), ``verified`` (the client certificate checked out)
    and ``client_cert`` (one was presented). ``own_tls`` is the ASGI tls
    extension of corral's own TLS when the header came before a handshake
    (``--proxy-protocol`` with ``--ssl-certfile``); set by the I/O layer."""

    __slots__ = ("version", "client", "server", "tls", "authority", "alpn", "unique_id", "own_tls")

    def __init__(self, version: int, client=None, server=None) -> None:
        self.version = version
        self.client: tuple[str, int] | None = client
        self.server: tuple[str, int] | None = server
        self.tls: dict | None = None
        self.authority: str | None = None  # the SNI the client sent
        self.alpn: bytes | None = None
        self.unique_id: bytes | None = None
        self.own_tls: dict | None = None

    def __repr__(self) -> str:
        return f"<ProxyInfo v{self.version} client={self.client} server={self.server} tls={self.tls}>"

    def asgi_extensions(self) -> dict:
        """Scope extensions: ``tls`` (the ASGI TLS extension) when the client
        spoke TLS to the proxy (or, with no such TLV, to corral behind the
        header: ``own_tls``), and ``corral.proxy`` with what the header
        carried; empty for a header without TLVs."""
        extensions = {}
        tls = self.tls
        if tls is None and self.own_tls is not None:
            extensions["tls"] = self.own_tls
        elif tls is not None:
            extensions["tls"] = {
                "server_cert": None,
                "client_cert_chain": [],
                "client_cert_name": None,
                "client_cert_error": None,
                "tls_version": TLS_VERSIONS.get(tls.get("version")),
                "cipher_suite": CIPHER_SUITES.get(tls.get("cipher")),
            }
        details = {}
        if tls is not None:
            details.update(("tls_" + key, value) for key, value in tls.items())
        if self.authority is not None:
            details["sni"] = self.authority
        if self.alpn is not None:
            details["alpn"] = self.alpn
        if self.unique_id is not None:
            details["unique_id"] = self.unique_id
        if details:
            extensions["corral.proxy"] = details
        return extensions

    def wsgi_environ(self) -> dict:
        """The same for WSGI, with mod_ssl's names where there is one."""
        environ: dict = {}
        tls = self.tls
        if tls is not None:
            environ["HTTPS"] = "on"
            for key, name in (("version", "SSL_PROTOCOL"), ("cipher", "SSL_CIPHER"), ("cn", "SSL_CLIENT_S_DN_CN")):
                if key in tls:
                    environ[name] = tls[key]
        if self.authority is not None:
            environ["SSL_TLS_SNI"] = self.authority
        if self.unique_id is not None:
            environ["corral.proxy_unique_id"] = self.unique_id
        return environ


class ProxyParser:
    """One connection's PROXY header; see the module docstring.

    ``versions``: the versions accepted, a subset of {1, 2}. ``required``:
    without a header, raise ProxyHeaderError instead of reporting none."""

    __slots__ = ("versions", "required", "buffer")

    def __init__(self, versions=(1, 2), required: bool = True) -> None:
        self.versions = frozenset(versions)
        self.required = required
        self.buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyInfo | None, bytes] | None:
        buffer = self.buffer = self.buffer + data
        if buffer[:12] == V2_SIGNATURE:
            if 2 not in self.versions:
                raise ProxyHeaderError("PROXY v2 header where v1 is expected")
            return self._v2(buffer)
        if buffer[:6] == V1_SIGNATURE:
            if 1 not in self.versions:
                raise ProxyHeaderError("PROXY v1 header where v2 is expected")
            return self._v1(buffer)
        if V2_SIGNATURE.startswith(buffer[:12]) or V1_SIGNATURE.startswith(buffer[:6]):
            return None  # could still be either: wait
        if self.required:
            raise ProxyHeaderError("no PROXY header" + _expected(self.versions))
        self.buffer = b""
        return None, buffer

    # -- version 1 -----------------------------------------------------------

    def _v1(self, buffer: bytes):
        end = buffer.find(b"\r\n", 0, V1_MAX_LENGTH)
        if end < 0:
            if len(buffer) >= V1_MAX_LENGTH or b"\n" in buffer:
                raise ProxyHeaderError("PROXY v1 header without CRLF in 107 bytes")
            return None
        line = buffer[:end]
        self.buffer = b""
        return _parse_v1(line), buffer[end + 2 :]

    # -- version 2 -----------------------------------------------------------

    def _v2(self, buffer: bytes):
        if len(buffer) < 16:
            return None
        version, command = buffer[12] >> 4, buffer[12] & 0x0F
        if version != 2:
            raise ProxyHeaderError(f"PROXY v2 header with version {version}")
        if command > 1:
            raise ProxyHeaderError(f"PROXY v2 header with command {command}")
        length = int.from_bytes(buffer[14:16], "big")
        if length > V2_MAX_LENGTH:
            raise ProxyHeaderError(f"PROXY v2 header of {length} bytes (limit {V2_MAX_LENGTH})")
        if len(buffer) < 16 + length:
            return None
        self.buffer = b""
        return _parse_v2(buffer[: 16 + length], command), buffer[16 + length :]


def _expected(versions) -> str:
    if versions == {1}:
        return " (v1 expected)"
    if versions == {2}:
        return " (v2 expected)"
    return ""


def _parse_v1(line: bytes) -> ProxyInfo:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 header is not ASCII") from None
    parts = text.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyInfo(1)  # the proxy does not know: keep the connection's addresses
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"malformed PROXY v1 header {text[:107]!r}")
    family = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    try:
        source, destination = family(parts[2]), family(parts[3])
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1 header with a bad {parts[1]} address: {text[:107]!r}") from None
    ports = [_v1_port(part) for part in parts[4:]]
    if None in ports:
        raise ProxyHeaderError(f"PROXY v1 header with a bad port: {text[:107]!r}")
    return ProxyInfo(1, (str(source), ports[0]), (str(destination), ports[1]))


def _v1_port(text: str) -> int | None:
    if not (text.isdigit() and text.isascii() and len(text) <= 5) or (text[0] == "0" and text != "0"):
        return None
    port = int(text)
    return port if port <= 65535 else None


_ADDRESS_SIZES = {0x1: 12, 0x2: 36, 0x3: 216}  # AF_INET, AF_INET6, AF_UNIX


def _parse_v2(header: bytes, command: int) -> ProxyInfo:
    family, transport = header[13] >> 4, header[13] & 0x0F
    if family > 3 or transport > 2:
        raise ProxyHeaderError(f"PROXY v2 header with address family 0x{header[13]:02x}")
    size = _ADDRESS_SIZES.get(family, 0)
    if 16 + size > len(header):
        raise ProxyHeaderError("PROXY v2 header shorter than its addresses")
    info = ProxyInfo(2)
    if command == 1 and transport != 0:  # PROXY over TCP or UDP; LOCAL keeps the connection's own
        if family == 0x1:
            src, dst, sport, dport = struct.unpack_from("!4s4sHH", header, 16)
            info.client = (str(ipaddress.IPv4Address(src)), sport)
            info.server = (str(ipaddress.IPv4Address(dst)), dport)
        elif family == 0x2:
            src, dst, sport, dport = struct.unpack_from("!16s16sHH", header, 16)
            info.client = (str(ipaddress.IPv6Address(src)), sport)
            info.server = (str(ipaddress.IPv6Address(dst)), dport)
    _parse_tlvs(info, header, 16 + size)
    return info


def _tlvs(data: bytes, start: int, end: int):
    """(type, value) pairs of a TLV block; raises on one that overruns it."""
    while start < end:
        if start + 3 > end:
            raise ProxyHeaderError("PROXY v2 TLV truncated")
        kind = data[start]
        length = int.from_bytes(data[start + 1 : start + 3], "big")
        value_start = start + 3
        start = value_start + length
        if start > end:
            raise ProxyHeaderError(f"PROXY v2 TLV 0x{kind:02x} longer than the header")
        yield kind, value_start, start


def _parse_tlvs(info: ProxyInfo, header: bytes, start: int) -> None:
    end = len(header)
    for kind, begin, stop in _tlvs(header, start, end):
        value = header[begin:stop]
        if kind == PP2_TYPE_AUTHORITY:
            info.authority = value.decode("utf-8", "replace")
        elif kind == PP2_TYPE_ALPN:
            info.alpn = value
        elif kind == PP2_TYPE_UNIQUE_ID:
            if len(value) > UNIQUE_ID_MAX:
                raise ProxyHeaderError(f"PROXY v2 unique ID of {len(value)} bytes (limit {UNIQUE_ID_MAX})")
            info.unique_id = value
        elif kind == PP2_TYPE_CRC32C:
            if len(value) != 4:
                raise ProxyHeaderError("PROXY v2 CRC32C TLV is not 4 bytes")
            zeroed = header[:begin] + b"\0\0\0\0" + header[stop:]
            if crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProxyHeaderError("PROXY v2 header fails its CRC32C")
        elif kind == PP2_TYPE_SSL:
            if len(value) < 5:
                raise ProxyHeaderError("PROXY v2 SSL TLV shorter than 5 bytes")
            client = value[0]
            verify = int.from_bytes(value[1:5], "big")
            if client & PP2_CLIENT_SSL:
                tls: dict = {
                    "client_cert": bool(client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)),
                    "verified": bool(client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS)) and verify == 0,
                }
                for sub, sub_begin, sub_stop in _tlvs(value, 5, len(value)):
                    name = _SSL_SUBTYPES.get(sub)
                    if name is not None:
                        tls[name] = value[sub_begin:sub_stop].decode("utf-8", "replace")
                info.tls = tls
            else:
                for _ in _tlvs(value, 5, len(value)):  # still checked for overruns
                    pass
        # Others (NOOP, NETNS, custom 0xE0-0xEF such as AWS's VPC endpoint) are skipped.


_SSL_SUBTYPES = {
    PP2_SUBTYPE_SSL_VERSION: "version",
    PP2_SUBTYPE_SSL_CN: "cn",
    PP2_SUBTYPE_SSL_CIPHER: "cipher",
    PP2_SUBTYPE_SSL_SIG_ALG: "sig_alg",
    PP2_SUBTYPE_SSL_KEY_ALG: "key_alg",
}


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the v2 CRC32C TLV carries it."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
