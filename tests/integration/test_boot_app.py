"""Mistakes in naming the app get one clear line at boot (exit 2), and what
the signature cannot tell still gets a 500 per request, never a dropped
connection (issue 20)."""

import re
import subprocess
import sys

import pytest

from h2support import H2Client
from support import APPS, ROOT, Reader, wait_until


def run_corral(*args, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "corral", *args, "--app-dir", str(APPS), "--host", "127.0.0.1", "--port", "0"],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("corral: error:")]


@pytest.mark.parametrize(
    "args, message",
    [
        (("mistakes:create_app",),
         "mistakes:create_app takes no arguments (signature ()): it looks like an application factory; pass --factory"),
        (("mistakes:asgi", "--factory"),
         "--factory: mistakes:asgi cannot be called without arguments (signature (scope, receive, send)): "
         "it looks like the application itself, not a factory; drop --factory"),
        (("mistakes:four_arguments",),
         "mistakes:four_arguments cannot be called as an application (signature (a, b, c, d)): "
         "an ASGI app takes (scope, receive, send), a WSGI app (environ, start_response)"),
        (("mistakes:asgi", "--interface", "wsgi"),
         "--interface wsgi: mistakes:asgi is an ASGI app (its call is a coroutine function); "
         "serve it with --interface asgi (or auto)"),
        (("mistakes:asgi_object", "--interface", "wsgi"),
         "--interface wsgi: mistakes:asgi_object is an ASGI app (its call is a coroutine function); "
         "serve it with --interface asgi (or auto)"),
        (("mistakes:wsgi", "--interface", "asgi"),
         "--interface asgi: mistakes:wsgi is a WSGI app (signature (environ, start_response)); "
         "serve it with --interface wsgi (or auto)"),
        (("import_inside:app",),
         "import_inside:app raised ModuleNotFoundError while importing: No module named 'no_such_module_inside_the_app'"),
    ],
)
def test_refused_at_boot_in_one_line(args, message):
    result = run_corral(*args)
    assert result.returncode == 2, result.stderr
    assert errors(result) == [f"corral: error: {message}"]
    assert result.stderr.splitlines()[-1] == f"corral: error: {message}"
    # One attempt: no retry, and at most the one traceback of the import.
    assert len(re.findall(r"master: started worker", result.stderr)) == 1
    assert result.stderr.count("Traceback") == (1 if args[0] == "import_inside:app" else 0)


def test_import_error_inside_the_app_is_one_traceback_with_several_workers():
    """Every worker fails alike at once: the master logs the first one's
    traceback (sent over its pipe) and stops; no retry."""
    result = run_corral("import_inside:app", "--workers", "3")
    assert result.returncode == 2
    assert result.stderr.count("Traceback") == 1
    assert result.stderr.count("ModuleNotFoundError: No module named 'no_such_module_inside_the_app'") == 1
    assert len(re.findall(r"master: started worker", result.stderr)) == 3  # one per slot, none again
    assert "next boot attempt" not in result.stderr


def test_factory_that_raises_says_so():
    result = run_corral("mistakes:factory_raising", "--factory")
    assert result.returncode == 3  # the factory's own error: retried, as one raised at import
    assert errors(result) == [
        "corral: error: mistakes:factory_raising raised TypeError while calling the factory: the factory's own TypeError"
    ]
    assert "while importing" not in result.stderr


def test_factory_passed_with_factory_serves(server_factory):
    server = server_factory("mistakes:create_app", "--factory")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = Reader(sock).response()
    assert (response.code, response.body) == (200, b"asgi")


def http1(server, path="/"):
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return Reader(sock).response()


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_app_raising_when_called_answers_500(server_factory, interface):
    """The call raises before a coroutine exists: 500 over HTTP/1.1 (and the
    connection closed, as after any 500) and over HTTP/2 (each stream), and
    the worker counts no request still in flight."""
    server = server_factory("mistakes:raises_on_call", "--interface", interface, "--lifespan", "off")
    with server.connect() as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = reader.response()
            assert response.code == 500
            assert response.body == b"Internal Server Error\n"
            assert response.headers[b"connection"] == b"close"
            assert reader.closed()
            sock = server.connect()
            reader = Reader(sock)
        sock.close()
    with H2Client(server.port) as client:
        streams = [client.request("/"), client.request("/")]
        for stream in streams:
            headers, body, _ = client.response(stream)
            assert headers[b":status"] == b"500"
    server.wait_log(r"TypeError: create_app\(\) takes 0 positional arguments but \d were given")
    assert not [line for line in server.lines if "Fatal error on transport" in line]
    mark = server.mark()
    server.stop()
    server.wait_log(r"draining 0 requests in flight on 0 connections and 0 websockets", start=mark)


def test_websocket_to_an_app_raising_when_called_answers_500(server_factory):
    server = server_factory("mistakes:raises_on_call", "--lifespan", "off")
    with server.connect() as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        response = Reader(sock).response()
    assert (response.code, response.body) == (500, b"Internal Server Error\n")
    server.wait_log(r"Exception in ASGI application \(WebSocket /ws\)")
    assert not [line for line in server.lines if "Fatal error on transport" in line]
