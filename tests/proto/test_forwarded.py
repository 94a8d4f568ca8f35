"""Forwarding fields (RFC 7239 Forwarded, X-Forwarded-*): trust, the walk, malformed input."""

from __future__ import annotations

import pytest

from corral.proto.forwarded import Forwarding, Identity, TrustedPeers, parse_forwarded, parse_node
from corral.proto.h1 import RequestParser

PROXY = ("127.0.0.1", 50000)
STRANGER = ("203.0.113.9", 40000)


def resolve(headers, peer=PROXY, scheme="http", trusted="127.0.0.1,::1", host=False):
    fields = [(name.encode(), value.encode("latin-1")) for name, value in headers]
    return Forwarding(TrustedPeers(trusted), host).resolve(fields, peer, scheme)


class TestTrustedPeers:
    def test_addresses_networks_and_everyone(self):
        peers = TrustedPeers(" 127.0.0.1, ::1 ,10.0.0.0/8,2001:db8::/32 ")
        assert peers.text == "127.0.0.1,::1,10.0.0.0/8,2001:db8::/32"
        assert "127.0.0.1" in peers and "::1" in peers and "10.20.30.40" in peers and "2001:db8::5" in peers
        assert "127.0.0.2" not in peers and "11.0.0.1" not in peers and "2001:db9::1" not in peers
        assert "::ffff:10.1.2.3" in peers  # IPv4-mapped
        assert "unknown" not in peers and "_hidden" not in peers and "not an ip" not in peers
        assert None in peers  # a UNIX socket peer
        everyone = TrustedPeers("*")
        assert "203.0.113.9" in everyone and "unknown" in everyone

    def test_the_answer_is_cached_per_address(self):
        peers = TrustedPeers("127.0.0.1")
        assert "127.0.0.1" in peers and "127.0.0.2" not in peers
        assert peers._cache == {"127.0.0.1": True, "127.0.0.2": False}

    @pytest.mark.parametrize("text", ["localhost", "127.0.0.1/33", "1.2.3", "10.0.0.0/8,bogus"])
    def test_bad_entries_are_refused(self, text):
        with pytest.raises(ValueError, match="is not an IP address, a CIDR network or"):
            TrustedPeers(text)


class TestNodes:
    @pytest.mark.parametrize(
        "text, node",
        [
            ("192.0.2.43", ("192.0.2.43", 0)),
            ("192.0.2.43:8080", ("192.0.2.43", 8080)),
            ("[2001:db8:cafe::17]", ("2001:db8:cafe::17", 0)),
            ("[2001:DB8:cafe:0::17]:4711", ("2001:db8:cafe::17", 4711)),
            ("2001:db8::17", ("2001:db8::17", 0)),
            ("unknown", ("unknown", 0)),
            ("UNKNOWN:_port", ("unknown", 0)),
            ("_hidden", ("_hidden", 0)),
            ("_SEVKISEK:_p1", ("_SEVKISEK", 0)),
        ],
    )
    def test_valid(self, text, node):
        assert parse_node(text) == node

    @pytest.mark.parametrize(
        "text",
        ["", "example.com", "192.0.2.256", "192.0.2.1:", "192.0.2.1:99999", "192.0.2.1:8o", "[2001:db8::1",
         "[2001:db8::1]x", "[192.0.2.1]", "[::1]:", "_", "hid den", "1.2.3.4:5:6:7", "１.2.3.4"],
    )
    def test_malformed(self, text):
        assert parse_node(text) is None


class TestForwardedSyntax:
    def test_elements_and_pairs(self):
        assert parse_forwarded('for=192.0.2.60;proto=http;by=203.0.113.43') == [
            {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}
        ]
        assert parse_forwarded('For="[2001:db8:cafe::17]:4711", for=192.0.2.43 ; PROTO=https') == [
            {"for": "[2001:db8:cafe::17]:4711"},
            {"for": "192.0.2.43", "proto": "https"},
        ]

    def test_quoted_strings_with_escapes_commas_and_semicolons(self):
        assert parse_forwarded(r'for="_a\"b,c;d", for=1.2.3.4') == [{"for": '_a"b,c;d'}, {"for": "1.2.3.4"}]

    def test_empty_elements_are_dropped(self):
        assert parse_forwarded(" , for=1.2.3.4,, ") == [{"for": "1.2.3.4"}]

    @pytest.mark.parametrize(
        "text",
        ["for", "for=", 'for="unterminated', "for=1.2.3.4;for=5.6.7.8", "for 1.2.3.4", '=x', 'for="a"b', "fo r=1"],
    )
    def test_a_malformed_element_is_none_and_the_next_one_still_parses(self, text):
        assert parse_forwarded(text + ", for=9.9.9.9") == [None, {"for": "9.9.9.9"}]


class TestTrust:
    def test_an_untrusted_peer_cannot_spoof(self):
        headers = [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https"), ("forwarded", "for=2.2.2.2;proto=https")]
        assert resolve(headers, peer=STRANGER) is None

    def test_a_unix_socket_peer_is_trusted(self):
        assert resolve([("x-forwarded-for", "1.1.1.1")], peer=None) == Identity(("1.1.1.1", 0), "http", None)

    def test_ipv6_peer(self):
        assert resolve([("x-forwarded-for", "1.1.1.1")], peer=("::1", 5)) == Identity(("1.1.1.1", 0), "http", None)

    def test_everyone_trusted_takes_the_leftmost(self):
        headers = [("x-forwarded-for", "1.1.1.1, 2.2.2.2, 3.3.3.3")]
        assert resolve(headers, peer=STRANGER, trusted="*").client == ("1.1.1.1", 0)


class TestXForwarded:
    def test_walk_right_to_left_first_untrusted_hop_is_the_client(self):
        headers = [("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.0.0.2,10.0.0.1")]
        assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8").client == ("1.1.1.1", 0)

    def test_every_hop_trusted_takes_the_leftmost(self):
        headers = [("x-forwarded-for", "10.0.0.3, 10.0.0.2")]
        assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8").client == ("10.0.0.3", 0)

    def test_duplicated_fields_are_one_list_in_order(self):
        headers = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "1.1.1.1,\t127.0.0.1 ")]
        assert resolve(headers).client == ("1.1.1.1", 0)

    def test_ports_and_ipv6(self):
        assert resolve([("x-forwarded-for", "[2001:db8::1]:443")]).client == ("2001:db8::1", 443)
        assert resolve([("x-forwarded-for", "2001:db8::1")]).client == ("2001:db8::1", 0)
        assert resolve([("x-forwarded-for", "1.1.1.1:8080")]).client == ("1.1.1.1", 8080)

    def test_garbage_left_of_the_client_changes_nothing(self):
        assert resolve([("x-forwarded-for", "<script>, 1.1.1.1")]).client == ("1.1.1.1", 0)

    def test_a_malformed_hop_reached_ignores_the_field(self):
        assert resolve([("x-forwarded-for", "1.1.1.1, not-an-ip")]) is None
        assert resolve([("x-forwarded-for", "1.1.1.1, 127.0.0.1:99999")]) is None

    def test_unknown_and_obfuscated_stop_the_walk(self):
        assert resolve([("x-forwarded-for", "1.1.1.1, unknown")]).client == ("unknown", 0)
        assert resolve([("x-forwarded-for", "1.1.1.1, _gw")]).client == ("_gw", 0)

    def test_empty_field_keeps_the_peer(self):
        assert resolve([("x-forwarded-for", " , ")]) == Identity(PROXY, "http", None)

    @pytest.mark.parametrize("value, scheme", [("https", "https"), ("HTTPS", "https"), ("http", "http"),
                                               ("wss", "https"), ("ws", "http"), ("ftp", "http"), ("https x", "http"),
                                               ("", "http")])
    def test_proto_only_http_https_ws_wss(self, value, scheme):
        assert resolve([("x-forwarded-proto", value)]).scheme == scheme

    def test_proto_cannot_downgrade_to_garbage(self):
        assert resolve([("x-forwarded-proto", "javascript")], scheme="https").scheme == "https"

    def test_proto_of_the_client_hop_when_the_lists_line_up(self):
        headers = [("x-forwarded-for", "1.1.1.1, 10.0.0.1"), ("x-forwarded-proto", "https, http")]
        assert resolve(headers, trusted="127.0.0.1,10.0.0.0/8").scheme == "https"
        headers = [("x-forwarded-for", "6.6.6.6, 1.1.1.1"), ("x-forwarded-proto", "https")]
        assert resolve(headers) == Identity(("1.1.1.1", 0), "https", None)

    def test_host_is_opt_in_and_validated(self):
        headers = [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-host", "example.com:8443")]
        assert resolve(headers).host is None
        assert resolve(headers, host=True).host == b"example.com:8443"
        assert resolve([("x-forwarded-host", "bad host/x")], host=True).host is None
        assert resolve([("x-forwarded-host", "[2001:db8::1]:80")], host=True).host == b"[2001:db8::1]:80"
        assert resolve([("x-forwarded-host", "a.example, b.example")], host=True).host == b"b.example"


class TestForwarded:
    def test_for_proto_host_of_the_client_element(self):
        headers = [("forwarded", 'for=1.1.1.1;proto=https;host=example.com, for=10.0.0.1;proto=http;host=inner')]
        identity = resolve(headers, trusted="127.0.0.1,10.0.0.0/8", host=True)
        assert identity == Identity(("1.1.1.1", 0), "https", b"example.com")

    def test_quoted_ipv6_with_port(self):
        assert resolve([("forwarded", 'for="[2001:db8:cafe::17]:4711"')]).client == ("2001:db8:cafe::17", 4711)

    def test_wins_over_x_forwarded(self):
        headers = [("x-forwarded-for", "2.2.2.2"), ("x-forwarded-proto", "https"), ("forwarded", "for=1.1.1.1")]
        assert resolve(headers) == Identity(("1.1.1.1", 0), "http", None)

    def test_duplicated_fields(self):
        headers = [("forwarded", "for=6.6.6.6"), ("forwarded", "for=1.1.1.1;proto=https"), ("forwarded", "for=127.0.0.1")]
        assert resolve(headers) == Identity(("1.1.1.1", 0), "https", None)

    def test_unknown_and_obfuscated(self):
        assert resolve([("forwarded", "for=unknown;proto=https")]) == Identity(("unknown", 0), "https", None)
        assert resolve([("forwarded", 'for="_hidden:_port"')]).client == ("_hidden", 0)

    def test_element_without_for_keeps_the_peer_takes_its_proto(self):
        assert resolve([("forwarded", "proto=https;by=10.0.0.1")]) == Identity(PROXY, "https", None)

    def test_client_garbage_on_the_left_changes_nothing(self):
        assert resolve([("forwarded", 'for="unterminated, for=1.1.1.1')]).client == ("1.1.1.1", 0)
        assert resolve([("forwarded", "for=1.2.3.4;for=5.6.7.8, for=1.1.1.1")]).client == ("1.1.1.1", 0)

    def test_a_malformed_element_reached_ignores_the_field(self):
        assert resolve([("forwarded", "for=1.1.1.1, for=127.0.0.1;for=127.0.0.1")]) is None
        assert resolve([("forwarded", "for=not-a-node")]) is None
        assert resolve([("forwarded", "for=1.1.1.1, for")]) is None

    def test_bad_proto_and_host_are_ignored(self):
        identity = resolve([("forwarded", "for=1.1.1.1;proto=gopher;host=\"a b\"")], host=True)
        assert identity == Identity(("1.1.1.1", 0), "http", None)


class TestParserFlag:
    """The parser flags forwarding fields while it looks at names anyway."""

    class Sink:
        def __init__(self):
            self.requests = []

        def on_request(self, request):
            self.requests.append(request)

        def on_body(self, request, chunk):
            pass

        def on_request_complete(self, request):
            pass

    def test_flag_per_request(self):
        sink = self.Sink()
        parser = RequestParser(sink)
        data = (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: a\r\nFORWARDED: for=1.1.1.1\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: b\r\nContent-Length: 0\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Port: 443\r\n\r\n"
        )
        for index in range(len(data)):  # byte by byte
            parser.feed(data[index : index + 1])
        assert [r.forwarded for r in sink.requests] == [True, False, True, True, True, False]


class TestWalkCache:
    def test_same_fields_same_answer_with_each_peer_port(self):
        forwarding = Forwarding(TrustedPeers("127.0.0.1"))
        fields = [(b"x-forwarded-proto", b"https")]
        assert forwarding.resolve(fields, ("127.0.0.1", 1), "http") == Identity(("127.0.0.1", 1), "https", None)
        assert forwarding.resolve(fields, ("127.0.0.1", 2), "http") == Identity(("127.0.0.1", 2), "https", None)
        assert len(forwarding._walks) == 1
        assert forwarding.resolve([(b"x-forwarded-for", b"1.1.1.1, bad")], ("127.0.0.1", 1), "http") is None
        assert forwarding.resolve([(b"x-forwarded-for", b"1.1.1.1, bad")], ("127.0.0.1", 1), "http") is None

    def test_large_fields_are_not_remembered(self):
        forwarding = Forwarding(TrustedPeers("127.0.0.1"))
        big = b", ".join(b"10.0.%d.%d" % (i // 256, i % 256) for i in range(100))
        assert forwarding.resolve([(b"x-forwarded-for", big)], ("127.0.0.1", 1), "http").client == ("10.0.0.99", 0)
        assert forwarding._walks == {}
