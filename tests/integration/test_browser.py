"""A real browser: headless Chromium opens WebSockets to corral.

Debian's ``chromium`` (``make test`` installs it) is driven over the Chrome
DevTools Protocol with a tiny client built on the ``websockets`` library: a
page served by corral runs JavaScript that talks to ``/echo`` and returns what
it saw. Once with permessage-deflate (Chromium always offers it), once with
the server's ``--no-ws-per-message-deflate``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed (make test installs it with apt-get; that failed here)",
)

EXCHANGE_JS = r"""
(async () => {
  const ws = new WebSocket(URL);
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("WebSocket error")); });
  const next = () => new Promise(resolve => { ws.onmessage = event => resolve(event.data); });
  const seen = {extensions: ws.extensions, protocol: ws.protocol};
  ws.send("hello ☃");
  seen.text = await next();
  const big = "compress me ".repeat(50000);
  ws.send(big);
  seen.bigEchoed = (await next()) === big;
  ws.send(new Uint8Array([0, 1, 2, 255]));
  seen.binary = Array.from(new Uint8Array(await next()));
  const closed = new Promise(resolve => { ws.onclose = event => resolve([event.code, event.reason, event.wasClean]); });
  ws.close(4000, "done");
  seen.close = await closed;
  return JSON.stringify(seen);
})()
"""


class Chromium:
    """Headless Chromium with a DevTools endpoint; ``evaluate`` runs JS in a page."""

    def __init__(self, *extra: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="corral-chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                *extra,
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.endpoint = self._wait_for_endpoint()
        self.stack = contextlib.ExitStack()
        self.cdp = self.stack.enter_context(connect(self.endpoint, max_size=None, compression=None, open_timeout=20))
        self.ids = itertools.count(1)

    def _wait_for_endpoint(self, timeout: float = 30.0) -> str:
        found: list[str] = []
        lines: list[str] = []

        def read():
            for line in self.proc.stderr:
                lines.append(line)
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match and not found:
                    found.append(match.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium did not start:\n" + "".join(lines[-30:]))
            time.sleep(0.05)
        return found[0]

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        ident = next(self.ids)
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.cdp.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.cdp.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    @contextlib.contextmanager
    def page(self, url: str):
        """A new tab showing ``url``; yields its DevTools session."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        try:
            session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            deadline = time.monotonic() + 20
            while True:
                state = self.evaluate(session, "document.readyState + ' ' + location.href")
                if state == f"complete {url}":
                    break
                assert time.monotonic() < deadline, state
                time.sleep(0.05)
            yield session
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def evaluate(self, session: str, expression: str):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium():
    browser = Chromium()
    yield browser
    browser.close()


@pytest.mark.parametrize("compression", [True, False], ids=["permessage-deflate", "uncompressed"])
def test_browser_exchanges_messages(server_factory, chromium, compression):
    args = () if compression else ("--no-ws-per-message-deflate",)
    server = server_factory("ws:app", *args)
    mark = server.mark()
    with chromium.page(f"http://127.0.0.1:{server.port}/page") as session:
        script = EXCHANGE_JS.replace("URL", json.dumps(f"ws://127.0.0.1:{server.port}/echo"))
        seen = json.loads(chromium.evaluate(session, script))
    if compression:
        assert seen["extensions"] == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    else:
        assert seen["extensions"] == ""
    assert seen["protocol"] == ""
    assert seen["text"] == "hello ☃"
    assert seen["bigEchoed"] is True
    assert seen["binary"] == [0, 1, 2, 255]
    assert seen["close"] == [4000, "done", True]
    server.wait_log(r"echo disconnect 4000 'done' after 3", start=mark)
    server.wait_log(r'"GET /echo HTTP/1.1" 101', start=mark)


SCOPE_JS = r"""
(async () => {
  const ws = new WebSocket(URL);
  const message = await new Promise((resolve, reject) => {
    ws.onmessage = event => resolve(event.data);
    ws.onerror = () => reject(new Error("WebSocket error"));
  });
  return message;
})()
"""


def test_browser_runs_the_websocket_as_an_http2_stream(server_factory, tmp_path):
    """RFC 8441 in a real browser: a page loaded over HTTP/2 (TLS, ALPN h2)
    opens a wss:// socket to the same origin; Chromium sends it as an
    extended CONNECT on the HTTP/2 connection it has, and the same WebSocket
    code answers it on that stream."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    server = server_factory("ws:app", "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile))
    browser = Chromium("--ignore-certificate-errors")
    try:
        origin = f"https://127.0.0.1:{server.port}"
        with browser.page(f"{origin}/page") as session:
            assert browser.evaluate(session, "performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
            view = json.loads(browser.evaluate(session, SCOPE_JS.replace("URL", json.dumps(f"wss://127.0.0.1:{server.port}/scope"))))
            seen = json.loads(browser.evaluate(session, EXCHANGE_JS.replace("URL", json.dumps(f"wss://127.0.0.1:{server.port}/echo"))))
    finally:
        browser.close()
    assert view["http_version"] == "2"  # the socket ran as an HTTP/2 stream
    assert view["scheme"] == "wss"
    assert seen["text"] == "hello ☃" and seen["bigEchoed"] is True and seen["binary"] == [0, 1, 2, 255]
    assert seen["extensions"].startswith("permessage-deflate")
    assert seen["close"] == [4000, "done", True]
