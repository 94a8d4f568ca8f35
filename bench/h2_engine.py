"""HTTP/2 engine choice: the ``h2`` library vs ``ngh2`` (libnghttp2), server side, no sockets.

A client connection (h2) produces the bytes of N GET requests (10 streams at
a time, as ``h2load -m10``); each engine, as the server, parses them and
answers each with a 3-field head and a 12-byte body. Reported: microseconds
per request (parse + respond + serialize), best of 5.

    python bench/h2_engine.py          # needs h2 and ngh2 (pip install ngh2)
"""

from __future__ import annotations

import time

import h2.config
import h2.connection
import h2.events

N = 20000
BATCH = 10
HEAD = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"12")]
BODY = b"Hello world!"


def client_bytes():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65535)  # the responses must not block on the window
    preface = client.data_to_send()
    batches = []
    for start in range(0, N, BATCH):
        for i in range(BATCH):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"),
                                      (b":authority", b"localhost"), (b"user-agent", b"h2load")], end_stream=True)
        batches.append(client.data_to_send())
    return preface, batches


def run_h2(preface, batches) -> float:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.initiate_connection()
    conn.receive_data(preface)
    conn.data_to_send()
    start = time.perf_counter()
    for data in batches:
        for event in conn.receive_data(data):
            if type(event) is h2.events.RequestReceived:
                conn.send_headers(event.stream_id, HEAD)
                conn.send_data(event.stream_id, BODY, end_stream=True)
        conn.data_to_send()
    return (time.perf_counter() - start) / N * 1e6


def run_ngh2(preface, batches) -> float:
    import ngh2

    conn = ngh2.Connection(ngh2.Role.SERVER)
    conn.initiate_connection()
    conn.receive_data(preface)
    conn.events()
    conn.data_to_send()
    RequestReceived = ngh2.RequestReceived
    start = time.perf_counter()
    for data in batches:
        conn.receive_data(data)
        for event in conn.events():
            if type(event) is RequestReceived:
                conn.send_response(event.stream_id, HEAD)
                conn.send_data(event.stream_id, BODY, end_stream=True)
        conn.data_to_send()
    return (time.perf_counter() - start) / N * 1e6


if __name__ == "__main__":
    preface, batches = client_bytes()
    for name, run in (("h2", run_h2), ("ngh2", run_ngh2)):
        try:
            best = min(run(preface, batches) for _ in range(5))
        except ImportError:
            print(f"{name}: not installed")
            continue
        print(f"{name}: {best:.1f} us/request ({1e6 / best:,.0f} requests/s on one core)")
