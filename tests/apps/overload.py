"""App for tests/integration/test_overload_control.py (issue 21).

* ``/``: burns ``OVERLOAD_BURN_MS`` (default 20) ms of CPU and counts the call;
* ``/count``: how many times ``/`` ran in this worker;
* ``/block?SECONDS``: blocks the worker's loop (a synchronous sleep), after
  writing ``OVERLOAD_MARK`` (a path) so that the test knows it is blocked.
"""

import os
import time

BURN = float(os.environ.get("OVERLOAD_BURN_MS", "20")) / 1000
MARK = os.environ.get("OVERLOAD_MARK")
calls = 0


def _burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def app(scope, receive, send):
    global calls
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/count":
        body = str(calls).encode()
    elif path == "/block":
        if MARK:
            with open(MARK, "w") as handle:
                handle.write("blocked")
        time.sleep(float(scope["query_string"] or b"1"))
        body = b"unblocked"
    else:
        calls += 1
        _burn(BURN)
        body = b"ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
