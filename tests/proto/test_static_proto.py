"""proto/static.py: what --static-path-mount decides, without files or sockets."""

from __future__ import annotations

import pytest

from corral.proto.static import (UNSATISFIABLE, MountError, accepted_encodings, byte_range, cache_control,
                                 content_type, etag, fresh, parse_mount, segments)

TAG = b'"5f-10"'
MTIME = 1_700_000_000.0
DATE = b"Tue, 14 Nov 2023 22:13:20 GMT"  # MTIME


@pytest.mark.parametrize("text, expected", [
    ("/static=./public", ("/static", "./public")),
    ("/a/b/=/srv/x", ("/a/b", "/srv/x")),
    ("./public", ("/static", "./public")),
    ("/=/srv", ("", "/srv")),
])
def test_parse_mount(text, expected):
    if expected[0] == "":
        with pytest.raises(MountError):
            parse_mount(text)
    else:
        assert parse_mount(text) == expected


@pytest.mark.parametrize("text", ["static=/x", "/a b=/x", "/a%2e=/x", "/a/../b=/x", "/x=", "/a?b=/x", "//a=/x"])
def test_bad_mounts(text):
    with pytest.raises(MountError):
        parse_mount(text)


@pytest.mark.parametrize("rest, expected", [
    (b"style.css", ["style.css"]),
    (b"a/b/c.js", ["a", "b", "c.js"]),
    (b"caf%C3%A9.txt", ["caf\u00e9.txt"]),
    (b"a%20b", ["a b"]),
    (b"", None),
    (b"..", None),
    (b"%2e%2e/x", None),
    (b"%2e%2e%2fx", None),
    (b"a/./b", None),
    (b"a//b", None),
    (b"a/", None),
    (b"/etc/passwd", None),
    (b"a%00b", None),
    (b"a%5cb", None),
    (b"a\\b", None),
    (b".env", None),
    (b"a/.git/config", None),
    (b"%ff", None),
])
def test_segments(rest, expected):
    assert segments(rest) == expected


def test_accepted_encodings():
    assert accepted_encodings(None) == ()
    assert accepted_encodings(b"gzip, deflate, br") == ("br", "gzip")
    assert accepted_encodings(b"gzip;q=0.5") == ("gzip",)
    assert accepted_encodings(b"br;q=0, gzip") == ("gzip",)
    assert accepted_encodings(b"*") == ("br", "gzip")
    assert accepted_encodings(b"*;q=0, br") == ("br",)
    assert accepted_encodings(b"identity") == ()


def test_fresh():
    assert fresh(TAG, None, TAG, MTIME)
    assert fresh(b'W/"5f-10"', None, TAG, MTIME)
    assert fresh(b'"a", "5f-10"', None, TAG, MTIME)
    assert fresh(b"*", None, TAG, MTIME)
    assert not fresh(b'"a"', DATE, TAG, MTIME)  # If-None-Match decides alone
    assert fresh(None, DATE, TAG, MTIME)
    assert fresh(None, b"Wed, 15 Nov 2023 00:00:00 GMT", TAG, MTIME)
    assert not fresh(None, b"Mon, 13 Nov 2023 00:00:00 GMT", TAG, MTIME)
    assert not fresh(None, b"not a date", TAG, MTIME)
    assert not fresh(None, None, TAG, MTIME)


@pytest.mark.parametrize("field, if_range, expected", [
    (None, None, None),
    (b"bytes=0-9", None, (0, 10)),
    (b"bytes=90-", None, (90, 10)),
    (b"bytes=-5", None, (95, 5)),
    (b"bytes=-500", None, (0, 100)),
    (b"bytes=10-5000", None, (10, 90)),
    (b"bytes=100-", None, UNSATISFIABLE),
    (b"bytes=100-200", None, UNSATISFIABLE),
    (b"bytes=-0", None, UNSATISFIABLE),
    (b"bytes=9-2", None, None),
    (b"bytes=0-1,4-5", None, None),
    (b"bytes=a-b", None, None),
    (b"bytes=-", None, None),
    (b"items=0-1", None, None),
    (b"bytes 0-1", None, None),
    (b"bytes=0-9", TAG, (0, 10)),
    (b"bytes=0-9", b'"other"', None),
    (b"bytes=0-9", b'W/"5f-10"', None),  # If-Range compares strongly
    (b"bytes=0-9", DATE, (0, 10)),
    (b"bytes=0-9", b"Mon, 13 Nov 2023 00:00:00 GMT", None),
])
def test_byte_range(field, if_range, expected):
    assert byte_range(field, if_range, 100, TAG, MTIME) == expected


def test_fields():
    assert etag(16, 95_000, None) == b'"5f-10"'
    assert etag(16, 95_000, "br") == b'"5f-10-br"'
    assert content_type("a/b.css") == b"text/css; charset=utf-8"
    assert content_type("x.wasm") == b"application/wasm"
    assert content_type("x.png") == b"image/png"
    assert content_type("noext") == b"application/octet-stream"
    assert cache_control(60) == b"public, max-age=60"
    assert cache_control(0) == b"no-cache"
