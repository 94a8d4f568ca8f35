"""Django Channels under corral: the project's ``ProtocolTypeRouter``
(tests/apps/djproject/routing.py) with the in-memory channel layer, its
consumers reached over HTTP/1.1 WebSocket, and Channels' own
``WebsocketCommunicator`` as the oracle (run in a subprocess,
tests/apps/compat_channels_oracle.py): the same scenarios give the same
transcript. HTTP through the same router goes to Django's ASGI handler.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from compat import client, no_errors, protocol, websocket, WebSocketClosed, WebSocketRefused, ws_transport
from support import APPS, Server

pytest.importorskip("channels", reason="Django Channels is in the test extra: pip install -e '.[test]'")
pytest.importorskip("daphne", reason="channels.testing needs daphne (the test extra: pip install -e '.[test]')")


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """Two migrated sqlite databases: corral's and the oracle's (each starts empty)."""
    base = tmp_path_factory.mktemp("channels")
    env = {"DJANGO_SETTINGS_MODULE": "djproject.settings", "CORRAL_DJANGO_DB": str(base / "db.sqlite3"),
           "CORRAL_DJANGO_STATIC": str(base / "static")}
    done = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(APPS), **env), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copy(base / "db.sqlite3", base / "oracle.sqlite3")
    return env, dict(env, CORRAL_DJANGO_DB=str(base / "oracle.sqlite3"))


@pytest.fixture(scope="module")
def server(databases):
    with Server("djproject.routing:application", extra_env=databases[0]) as server:
        yield server
        no_errors(server, 0)  # nothing the suite did was an error


@pytest.fixture(scope="module")
def oracle(databases):
    done = subprocess.run([sys.executable, str(APPS / "compat_channels_oracle.py")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(APPS), **databases[1]), timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def connect(server, transport, path, origin=None):
    return websocket(server, transport, path, [("origin", origin or f"http://127.0.0.1:{server.port}")])


def closed_code(ws) -> int:
    with pytest.raises(WebSocketClosed) as closed:
        ws.recv()
    return closed.value.code


@ws_transport
def test_echo_bytes_and_server_close(server, oracle, transport):
    with connect(server, transport, "/ws/room/lobby/") as ws:
        transcript = [ws.recv()]
        ws.send("hi")
        transcript.append(ws.recv())
        ws.send(b"abc")
        transcript.append({"bytes": ws.recv().decode()})
        ws.send("close")
        transcript.append({"close": closed_code(ws)})
    assert transcript == oracle["room"] == ["welcome to lobby, AnonymousUser", "echo: hi", {"bytes": "cba"},
                                            {"close": 4001}]


@ws_transport
def test_group_send_reaches_every_member(server, oracle, transport):
    with connect(server, transport, "/ws/room/g/") as first, connect(server, "ws", "/ws/room/g/") as second:
        first.recv(), second.recv()
        first.send("all:hello")
        assert [first.recv(), second.recv()] == oracle["group"] == ["room g: hello"] * 2


@ws_transport
def test_sync_consumer_uses_the_orm(server, oracle, transport):
    with connect(server, transport, "/ws/notes/") as ws:
        transcript = [json.loads(ws.recv())]
        ws.send(json.dumps({"add": "one"}))
        transcript.append(json.loads(ws.recv()))
    # The same database for both transports: counted from where this run began.
    before = transcript[0]["notes"]
    assert oracle["notes"] == [{"notes": 0}, {"added": "one", "notes": 1}]
    assert transcript == [{"notes": before}, {"added": "one", "notes": before + 1}]


@ws_transport
def test_foreign_origin_is_refused(server, oracle, transport):
    with pytest.raises(WebSocketRefused) as refused:
        connect(server, transport, "/ws/room/lobby/", origin="http://evil.example")
    assert refused.value.status == 403 and oracle["refused"] is True


@protocol
def test_http_goes_to_django(server, protocol):
    with client(server, protocol) as http:
        response = http.get("/json/", params={"n": "3"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {"items": [{"id": i, "name": f"item {i}"} for i in range(3)]}
