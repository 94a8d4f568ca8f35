"""The oracle of tests/integration/test_compat_channels.py: the same WebSocket
scenarios run with Channels' own ``WebsocketCommunicator`` against
``djproject.routing.application`` in this process; prints the transcript as
JSON. Run in a subprocess so that this process's Django settings (its
database) are not the test process's."""

import asyncio
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")

from djproject.routing import application  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402

ORIGIN = [(b"origin", b"http://127.0.0.1")]


def socket(path, origin=ORIGIN):
    return WebsocketCommunicator(application, path, headers=origin)


async def scenarios():
    out = {}
    room = socket("/ws/room/lobby/")
    assert (await room.connect())[0]
    transcript = [await room.receive_from()]
    await room.send_to(text_data="hi")
    transcript.append(await room.receive_from())
    await room.send_to(bytes_data=b"abc")
    transcript.append({"bytes": (await room.receive_output())["bytes"].decode()})
    await room.send_to(text_data="close")
    transcript.append({"close": (await room.receive_output())["code"]})
    await room.wait()
    out["room"] = transcript

    first, second = socket("/ws/room/g/"), socket("/ws/room/g/")
    for member in (first, second):
        assert (await member.connect())[0]
        await member.receive_from()
    await first.send_to(text_data="all:hello")
    out["group"] = [await first.receive_from(), await second.receive_from()]
    for member in (first, second):
        await member.disconnect()

    notes = socket("/ws/notes/")
    assert (await notes.connect())[0]
    transcript = [await notes.receive_json_from()]
    await notes.send_json_to({"add": "one"})
    transcript.append(await notes.receive_json_from())
    await notes.disconnect()
    out["notes"] = transcript

    refused = socket("/ws/room/lobby/", origin=[(b"origin", b"http://evil.example")])
    out["refused"] = not (await refused.connect())[0]
    return out


if __name__ == "__main__":
    json.dump(asyncio.run(scenarios()), sys.stdout)
