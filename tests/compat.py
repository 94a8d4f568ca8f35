"""Helpers of the framework compatibility suite (tests/integration/test_compat_*.py).

Each module starts one corral (module-scoped) with the framework's app from
tests/apps/compat_*.py under the defaults, talks to it over HTTP/1.1 and
over HTTP/2 in cleartext (h2c, prior knowledge, as httpx does it), and
compares what corral answered with what the framework's own test client
answers for the same request: the framework is the oracle.
"""

from __future__ import annotations

import importlib
import re
import sys

import httpx
import pytest

from support import APPS

PROTOCOLS = ("http/1.1", "h2c")

# The response headers compared with the oracle's. Those a server sets
# (date, server, connection, transfer-encoding) are not the app's answer;
# content-length is compared where the oracle has one and corral has one
# (HTTP/2 may omit it for a streamed body, as HTTP/1.1 chunks it).
COMPARED = ("content-type", "location", "set-cookie", "cache-control", "allow", "www-authenticate", "etag",
            "content-disposition", "vary")


def client(server, protocol: str, **kwargs) -> httpx.Client:
    """An httpx client of ``server`` speaking ``protocol`` only."""
    if protocol == "h2c":
        return httpx.Client(base_url=server.url, http1=False, http2=True, **kwargs)
    return httpx.Client(base_url=server.url, **kwargs)


def check_version(response: httpx.Response, protocol: str) -> None:
    assert response.http_version == ("HTTP/2" if protocol == "h2c" else "HTTP/1.1")


def same_answer(ours: httpx.Response, oracle, protocol: str, *, headers=(), body: bool = True) -> None:
    """corral's response ``ours`` says what the framework's test client
    answered (``oracle``, an httpx.Response or compatible): the status, the
    body, the app's headers (``COMPARED`` plus ``headers``), content-length
    where both have one."""
    check_version(ours, protocol)
    assert ours.status_code == oracle.status_code, (ours.text[:300], oracle.text[:300])
    if body:
        assert ours.content == oracle.content
    for name in (*COMPARED, *headers):
        if name == "allow":  # Starlette builds it from a set: its order is the process's hash seed's
            assert sorted(ours.headers.get("allow", "").split(", ")) == sorted(oracle.headers.get("allow", "").split(", "))
            continue
        assert ours.headers.get_list(name) == oracle.headers.get_list(name), name
    if "content-length" in ours.headers and "content-length" in oracle.headers:
        assert ours.headers["content-length"] == oracle.headers["content-length"]


def no_errors(server, start: int) -> None:
    """No ERROR line and no traceback in the server's log since ``start``."""
    bad = [line for line in server.lines[start:] if "[ERROR]" in line or line.startswith("Traceback")
           or "Exception in ASGI application" in line or re.match(r"^\s+\| ", line)]
    assert not bad, "\n".join(server.lines[start:])


def import_app(module: str):
    """Import tests/apps/``module`` in the test process (for the oracle)."""
    sys.path.insert(0, str(APPS))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(APPS))


protocol = pytest.mark.parametrize("protocol", PROTOCOLS)

# Starlette >= 1.x asks for httpx2 under its TestClient; the oracle works with httpx.
QUIET_TESTCLIENT = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
