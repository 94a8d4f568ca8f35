"""The ``send_file`` exchange verb, on each connection, over a socketpair:
os.sendfile on an HTTP/1.1 plain socket (waiting on the socket's
writability through a duplicate descriptor), DATA frames as an HTTP/2
stream's window opens; a client that stops reading is held to
--timeout-write, one that leaves ends the send with nothing left open, a
file shorter than promised cuts the response."""

from __future__ import annotations

import os

import pytest

DATA = os.urandom(2 * 1024 * 1024 + 3)  # more than a socketpair's buffers


@pytest.fixture
def path(tmp_path):
    file = tmp_path / "data.bin"
    file.write_bytes(DATA)
    return str(file)


def file_app(path: str, count: int | None = None):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if count is None:
            await send({"type": "http.response.pathsend", "path": path})
        else:
            with open(path, "rb") as file:
                await send({"type": "http.response.zerocopysend", "file": file, "offset": 0, "count": count})
    return app


def open_files() -> list[str]:
    """What this process's descriptors name (files, socket:[inode])."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return names


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_h1_waits_for_a_slow_reader_then_sends_it_all(pair, path):
    p = pair(file_app(path))
    client = p.client
    client.reading = False
    p.send(GET)
    p.run_until(lambda: p.conn.write_since, what="the sendfile to wait for the socket")
    assert p.state.stepper.tasks_created == 1  # the send waits in a Task, nothing else does
    client.reading = True
    [response] = p.responses_count(1)
    assert response.status == 200 and response.headers[b"content-length"] == b"%d" % len(DATA)
    assert response.body == DATA
    assert not p.conn.write_since and not p.conn.closing  # kept alive, the clock cleared
    p.send(GET)
    assert p.responses_count(2)[1].body == DATA


def test_h1_a_reader_that_stops_is_held_to_the_write_timeout(pair, path):
    p = pair(file_app(path), timeout_write=5)
    p.client.reading = False
    p.send(GET)
    p.run_until(lambda: p.conn.write_since, what="the sendfile to wait")
    p.later(4)
    assert not p.conn.closing
    p.later(2)
    assert p.conn.closing and p.conn.close_reason == "write_timeout"


def test_h1_a_client_that_leaves_ends_the_send_with_nothing_left_open(pair, path):
    p = pair(file_app(path))
    p.client.reading = False
    p.send(GET)
    p.run_until(lambda: p.conn.write_since, what="the sendfile to wait")
    server_socket = os.readlink(f"/proc/self/fd/{p.conn.transport.get_extra_info('socket').fileno()}")
    assert open_files().count(server_socket) == 2 and path in open_files()  # the socket, its duplicate; the file
    p.client.sock.close()
    p.client.eof = True
    p.run_until(lambda: p.conn.closing and p.conn.cycle is None, what="the cycle to end")
    p.spin(5)
    assert server_socket not in open_files() and path not in open_files()


def test_h1_over_a_chunked_response_reads_and_writes(pair, path):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with open(path, "rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 1, "count": 100000,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    p = pair(app)
    p.send(GET)
    [response] = p.responses_count(1)
    assert response.headers[b"transfer-encoding"] == b"chunked"
    assert response.body == DATA[1:100001] + b"!"


def test_h1_a_short_file_cuts_the_response(pair, path):
    p = pair(file_app(path, len(DATA) + 10))
    p.send(GET)
    p.until_closed()
    assert p.client.responses.done == []  # never a complete response
    head, _, body = p.client.received.partition(b"\r\n\r\n")
    assert b"content-length: %d" % (len(DATA) + 10) in head and body == DATA


def test_h2_sends_as_the_window_opens(h2pair, path):
    p = h2pair(file_app(path))
    stream_id = p.client.request("/")
    stream = p.finished(stream_id)
    assert stream.status == 200 and stream.header(b"content-length") == b"%d" % len(DATA)
    assert stream.body == DATA


def test_h2_a_short_file_resets_the_stream(h2pair, path):
    p = h2pair(file_app(path, len(DATA) + 10))
    stream = p.finished(p.client.request("/"))
    assert stream.reset == 2 and stream.body == DATA  # INTERNAL_ERROR after the bytes there were
