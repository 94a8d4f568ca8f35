"""Static files, sans-I/O: what ``--static-path-mount`` decides without
touching a socket (``io/static.py`` opens the files and sends them).

- ``parse_mount``: ``URL_PREFIX=DIR`` (or a bare ``DIR``, mounted at
  ``/static`` as Granian's default route) -> (prefix, directory).
- ``segments``: the request's raw path below the prefix -> the path
  segments to join under the directory, or None for anything that could
  leave it or name something odd: ``..`` and ``.`` (also percent-encoded:
  ``%2e%2e%2f``) and any name starting with a dot (``.git``, ``.env``), an empty segment (``//etc/passwd``, a trailing ``/``),
  NUL (``%00``), a backslash, bytes that are not UTF-8.
- ``representation``: which file to send for an ``Accept-Encoding``
  (a ``.br`` or ``.gz`` sibling, precompressed).
- ``fresh``: ``If-None-Match`` / ``If-Modified-Since`` (RFC 9110 13.1):
  answer 304.
- ``byte_range``: a single ``Range: bytes=`` (RFC 9110 14.2), honouring
  ``If-Range``; several ranges are answered with the whole file (200).
- ``headers``: the response fields (type, length, validators, caching).
"""

from __future__ import annotations

import mimetypes
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

DEFAULT_PREFIX = "/static"
# Precompressed siblings, best first, and the Content-Encoding each is sent with.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))
UNSATISFIABLE = "unsatisfiable"

mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("image/avif", ".avif")
mimetypes.add_type("font/woff2", ".woff2")


class MountError(ValueError):
    """A bad --static-path-mount value."""


def parse_mount(text: str) -> tuple[str, str]:
    """``/assets=./public`` -> ("/assets", "./public"); ``./public`` -> ("/static", "./public")."""
    prefix, sep, directory = text.partition("=")
    if not sep:
        prefix, directory = DEFAULT_PREFIX, text
    prefix = prefix.rstrip("/")
    if not prefix.startswith("/") or any(c in prefix for c in "?#%\\ \t") or not prefix.isascii() or "//" in prefix:
        raise MountError(f"URL prefix {prefix or '/'!r} must be a path like /static (no /, query, % or spaces)")
    if not directory:
        raise MountError(f"{text!r}: no directory after the =")
    parts = prefix.split("/")[1:]
    if any(part in (".", "..") for part in parts):
        raise MountError(f"URL prefix {prefix!r} must not contain . or .. segments")
    return prefix, directory


def segments(rest: bytes) -> list[str] | None:
    """The raw path below the mount's prefix (without the leading ``/``)
    -> its decoded segments, or None to refuse it (404)."""
    if not rest:
        return None  # the mount itself: a directory
    raw = unquote_to_bytes(rest)
    if b"\x00" in raw or b"\\" in raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split("/")
    for part in parts:
        if not part or part[0] == ".":  # ., .., and hidden files (.git, .env)
            return None
    return parts


def _tokens(value: bytes):
    """``a;q=0.5, b`` -> (name, q) pairs, lowercased."""
    for item in value.split(b","):
        name, _, params = item.partition(b";")
        name = name.strip().lower()
        q = 1.0
        for param in params.split(b";"):
            key, _, number = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    q = float(number.strip() or b"1")
                except ValueError:
                    q = 0.0
        if name:
            yield name, q


def accepted_encodings(accept_encoding: bytes | None) -> tuple[str, ...]:
    """The precompressed encodings the client accepts (q > 0), best first."""
    if not accept_encoding:
        return ()
    weights = dict(_tokens(accept_encoding))
    star = weights.get(b"*", 0.0)
    return tuple(name for name, _ in ENCODINGS if weights.get(name.encode(), star) > 0)


def etag(size: int, mtime_ns: int, encoding: str | None) -> bytes:
    tag = b'"%x-%x' % (mtime_ns // 1000, size)
    return tag + (b"-" + encoding.encode() if encoding else b"") + b'"'


def _etag_matches(field: bytes, tag: bytes, weak: bool) -> bool:
    for item in field.split(b","):
        item = item.strip()
        if item == b"*":
            return True
        if weak and item.startswith(b"W/"):
            item = item[2:]
        if item == tag:
            return True
    return False


def _date(value: bytes):
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def fresh(if_none_match: bytes | None, if_modified_since: bytes | None, tag: bytes, mtime: float) -> bool:
    """The client's copy is current: 304 (If-None-Match wins over If-Modified-Since)."""
    if if_none_match is not None:
        return _etag_matches(if_none_match, tag, True)
    if if_modified_since is not None:
        since = _date(if_modified_since)
        return since is not None and int(mtime) <= since
    return False


def byte_range(range_field: bytes | None, if_range: bytes | None, size: int, tag: bytes, mtime: float):
    """None (send the whole file), (start, length) for a 206, or
    UNSATISFIABLE (416). A malformed field, a unit other than bytes, several
    ranges, or an If-Range that does not match: the whole file."""
    if range_field is None:
        return None
    if if_range is not None:
        if if_range.startswith(b'"') or if_range.startswith(b"W/"):
            if if_range != tag:  # a strong comparison (RFC 9110 13.1.5)
                return None
        else:
            when = _date(if_range)
            if when is None or int(mtime) != when:
                return None
    unit, _, spec = range_field.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first, dash, last = spec.strip().partition(b"-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if first and not first.isdigit() or last and not last.isdigit():
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            return UNSATISFIABLE
        start = max(size - suffix, 0)
        return start, size - start
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None  # invalid: ignored (RFC 9110 14.1.1)
    if start >= size:
        return UNSATISFIABLE
    if end is None:
        end = size - 1
    end = min(end, size - 1)
    return start, end - start + 1


def content_type(path: str) -> bytes:
    kind, _ = mimetypes.guess_type(path, strict=False)
    if kind is None:
        return b"application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json", "image/svg+xml"):
        return kind.encode() + b"; charset=utf-8"
    return kind.encode()


def http_date(mtime: float) -> bytes:
    return formatdate(mtime, usegmt=True).encode()


def cache_control(max_age: int) -> bytes:
    return b"public, max-age=%d" % max_age if max_age else b"no-cache"
