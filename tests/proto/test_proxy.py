"""PROXY protocol v1 and v2 (haproxy's proxy-protocol.txt), byte by byte."""

from __future__ import annotations

import struct

import pytest

from corral.proto.proxy import V2_MAX_LENGTH, ProxyHeaderError, ProxyParser, crc32c

HTTP = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def feed_all(parser, data: bytes, chunk: int):
    """Feed ``data`` in pieces; the result of the piece that decided, or None."""
    for start in range(0, len(data), chunk):
        result = parser.feed(data[start : start + chunk])
        if result is not None:
            info, rest = result
            return info, rest + data[start + chunk :]
    return None


def parse(data: bytes, versions=(1, 2), required=True):
    """Whole, one byte at a time and in 7-byte pieces: the same answer every way."""
    results = [feed_all(ProxyParser(versions, required), data, size) for size in (len(data) or 1, 1, 7)]
    shown = [None if r is None else (r[0] and (r[0].version, r[0].client, r[0].server, r[0].tls), r[1]) for r in results]
    assert shown[0] == shown[1] == shown[2], shown
    return results[0]


def error(data: bytes, versions=(1, 2), required=True) -> str:
    for size in (len(data) or 1, 1):
        with pytest.raises(ProxyHeaderError) as caught:
            feed_all(ProxyParser(versions, required), data, size)
    return caught.value.detail


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def v2(command=0x21, family=0x11, addresses=None, tlvs=b"", length=None) -> bytes:
    if addresses is None:
        addresses = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 40000, 443)
    body = addresses + tlvs
    return SIG + bytes([command, family]) + struct.pack("!H", len(body) if length is None else length) + body


class TestV1:
    def test_tcp4(self):
        info, rest = parse(b"PROXY TCP4 192.0.2.1 198.51.100.7 40000 443\r\n" + HTTP)
        assert (info.version, info.client, info.server, info.tls) == (1, ("192.0.2.1", 40000), ("198.51.100.7", 443), None)
        assert rest == HTTP

    def test_tcp6(self):
        info, rest = parse(b"PROXY TCP6 2001:db8::1 2001:DB8::2 65535 0\r\n")
        assert (info.client, info.server, rest) == (("2001:db8::1", 65535), ("2001:db8::2", 0), b"")

    def test_unknown_keeps_the_connections_addresses(self):
        for line in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"):
            info, rest = parse(line + HTTP)
            assert (info.version, info.client, info.server, rest) == (1, None, None, HTTP)

    def test_waits_for_the_whole_line(self):
        parser = ProxyParser()
        for byte in b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r":
            assert parser.feed(bytes([byte])) is None
        info, rest = parser.feed(b"\n")
        assert info.client == ("1.2.3.4", 1) and rest == b""

    @pytest.mark.parametrize(
        "line, detail",
        [
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed PROXY v1 header"),
            (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed PROXY v1 header"),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed PROXY v1 header"),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad TCP4 address"),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "bad TCP4 address"),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad TCP6 address"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CRLF"),
            (b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n", "not ASCII"),
            (b"PROXY " + b"A" * 101 + b"\r\n", "without CRLF in 107 bytes"),
        ],
    )
    def test_malformed(self, line, detail):
        assert detail in error(line + HTTP)

    def test_the_longest_header_fits(self):
        line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
        assert len(line) == 104
        assert parse(line)[0].client[1] == 65535
        assert parse(b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n")[0].client is None  # 107 bytes


class TestV2:
    def test_tcp4(self):
        info, rest = parse(v2() + HTTP)
        assert (info.version, info.client, info.server, rest) == (2, ("192.0.2.1", 40000), ("198.51.100.7", 443), HTTP)

    def test_tcp6(self):
        addresses = bytes(15) + b"\x01" + b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02" + struct.pack("!HH", 1, 2)
        info, _ = parse(v2(family=0x21, addresses=addresses))
        assert (info.client, info.server) == (("::1", 1), ("2001:db8::2", 2))

    def test_local_command_keeps_the_connections_addresses(self):
        info, rest = parse(v2(command=0x20) + HTTP)
        assert (info.version, info.client, rest) == (2, None, HTTP)
        info, _ = parse(v2(command=0x20, family=0x00, addresses=b""))
        assert info.client is None

    def test_unspec_and_unix_families_keep_the_connections_addresses(self):
        assert parse(v2(family=0x00, addresses=b""))[0].client is None
        assert parse(v2(family=0x31, addresses=bytes(216)))[0].client is None

    def test_tlvs(self):
        ssl = b"\x05" + struct.pack("!I", 0) + tlv(0x21, b"TLSv1.3") + tlv(0x23, b"TLS_AES_256_GCM_SHA384") + tlv(0x22, b"alice")
        tlvs = tlv(0x02, b"app.example") + tlv(0x01, b"h2") + tlv(0x05, b"\x00\x01id") + tlv(0x04, b"\0\0") + tlv(0x20, ssl)
        tlvs += tlv(0xEA, b"\x01vpce-123")  # AWS: skipped
        info, rest = parse(v2(tlvs=tlvs) + HTTP)
        assert rest == HTTP
        assert (info.authority, info.alpn, info.unique_id) == ("app.example", b"h2", b"\x00\x01id")
        assert info.tls == {"client_cert": True, "verified": True, "version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "cn": "alice"}
        extensions = info.asgi_extensions()
        assert extensions["tls"]["tls_version"] == 0x0304 and extensions["tls"]["cipher_suite"] == 0x1302
        assert extensions["tls"]["client_cert_chain"] == [] and extensions["tls"]["server_cert"] is None
        assert extensions["corral.proxy"] == {
            "tls_client_cert": True, "tls_verified": True, "tls_version": "TLSv1.3",
            "tls_cipher": "TLS_AES_256_GCM_SHA384", "tls_cn": "alice", "sni": "app.example", "alpn": b"h2",
            "unique_id": b"\x00\x01id",
        }
        assert info.wsgi_environ() == {
            "HTTPS": "on", "SSL_PROTOCOL": "TLSv1.3", "SSL_CIPHER": "TLS_AES_256_GCM_SHA384",
            "SSL_CLIENT_S_DN_CN": "alice", "SSL_TLS_SNI": "app.example", "corral.proxy_unique_id": b"\x00\x01id",
        }

    def test_ssl_tlv_without_the_ssl_flag_is_not_tls(self):
        info, _ = parse(v2(tlvs=tlv(0x20, b"\x00" + bytes(4))))
        assert info.tls is None and info.asgi_extensions() == {} and info.wsgi_environ() == {}

    def test_crc32c(self):
        assert crc32c(b"123456789") == 0xE3069283  # the standard check value
        header = v2(tlvs=tlv(0x03, bytes(4)))
        good = header[:-4] + struct.pack("!I", crc32c(header))
        assert parse(good + HTTP)[1] == HTTP
        bad = good[:-1] + bytes([good[-1] ^ 1])
        assert "fails its CRC32C" in error(bad)

    @pytest.mark.parametrize(
        "header, detail",
        [
            (SIG + b"\x11\x11\x00\x0c" + bytes(12), "version 1"),
            (SIG + b"\x22\x11\x00\x0c" + bytes(12), "command 2"),
            (SIG + b"\x21\x41\x00\x00", "address family 0x41"),
            (SIG + b"\x21\x13\x00\x00", "address family 0x13"),
            (SIG + b"\x21\x11\x00\x08" + bytes(8), "shorter than its addresses"),
            (SIG + b"\x21\x21\x00\x0c" + bytes(12), "shorter than its addresses"),
            (v2(tlvs=b"\x02\x00"), "TLV truncated"),
            (v2(tlvs=b"\x02\x00\x05abc"), "TLV 0x02 longer than the header"),
            (v2(tlvs=tlv(0x05, bytes(129))), "unique ID of 129 bytes"),
            (v2(tlvs=tlv(0x03, b"abc")), "CRC32C TLV is not 4 bytes"),
            (v2(tlvs=tlv(0x20, b"\x01\x00")), "SSL TLV shorter than 5 bytes"),
            (v2(tlvs=tlv(0x20, b"\x01" + bytes(4) + b"\x21\x00\x09TLS")), "TLV 0x21 longer than the header"),
        ],
    )
    def test_malformed(self, header, detail):
        assert detail in error(header + HTTP)

    def test_length_is_bounded_before_reading_the_rest(self):
        parser = ProxyParser()
        header = SIG + b"\x21\x11" + struct.pack("!H", V2_MAX_LENGTH + 1)
        with pytest.raises(ProxyHeaderError, match=f"PROXY v2 header of {V2_MAX_LENGTH + 1} bytes"):
            parser.feed(header)
        padding = tlv(0x04, bytes(V2_MAX_LENGTH - 12 - 3))
        assert parse(v2(tlvs=padding))[0].client == ("192.0.2.1", 40000)  # exactly the limit


class TestModes:
    def test_required_header_missing(self):
        assert error(HTTP) == "no PROXY header"
        assert error(HTTP, versions=(1,)) == "no PROXY header (v1 expected)"
        assert error(HTTP, versions=(2,)) == "no PROXY header (v2 expected)"

    def test_decides_as_soon_as_the_bytes_cannot_be_a_header(self):
        assert ProxyParser().feed(b"P") is None  # PROXY or POST?
        assert ProxyParser().feed(b"\r\n\r") is None
        with pytest.raises(ProxyHeaderError):
            ProxyParser().feed(b"G")
        with pytest.raises(ProxyHeaderError):
            ProxyParser().feed(b"POST")
        with pytest.raises(ProxyHeaderError):
            ProxyParser().feed(b"\r\n\r\n\x00\r\nQUIX")

    def test_wrong_version(self):
        assert error(v2(), versions=(1,)) == "PROXY v2 header where v1 is expected"
        assert error(b"PROXY UNKNOWN\r\n", versions=(2,)) == "PROXY v1 header where v2 is expected"

    def test_optional_header(self):
        assert parse(HTTP, required=False) == (None, HTTP)
        assert parse(b"\r\nGET / HTTP/1.1\r\n\r\n", required=False) == (None, b"\r\nGET / HTTP/1.1\r\n\r\n")
        assert parse(b"PROXY UNKNOWN\r\n" + HTTP, required=False)[1] == HTTP
        assert parse(v2() + HTTP, required=False)[0].client == ("192.0.2.1", 40000)
        assert "v2" in error(v2(command=0x31), required=False)
