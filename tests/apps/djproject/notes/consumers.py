"""Django Channels consumers (tests/integration/test_compat_channels.py):
an async echo with a group, and a sync JSON consumer that uses the ORM."""

from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer

from .models import Note


class RoomConsumer(AsyncWebsocketConsumer):
    """Echoes text; "all:<text>" is sent to every socket in the room (the
    channel layer's group); "close" makes the server close with 4001."""

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"room-{self.room}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=f"welcome to {self.room}, {self.scope['user']}")

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data[::-1])
        elif text_data == "close":
            await self.close(code=4001)
        elif text_data.startswith("all:"):
            await self.channel_layer.group_send(self.group, {"type": "room.message", "text": text_data[4:]})
        else:
            await self.send(text_data=f"echo: {text_data}")

    async def room_message(self, event):
        await self.send(text_data=f"room {self.room}: {event['text']}")


class NotesConsumer(JsonWebsocketConsumer):
    """A sync consumer (Channels runs it in a thread): the ORM inside a WebSocket."""

    def connect(self):
        self.accept()
        self.send_json({"notes": Note.objects.filter(text__startswith="ws ").count()})

    def receive_json(self, content):
        Note.objects.create(text=f"ws {content['add']}")
        self.send_json({"added": content["add"], "notes": Note.objects.filter(text__startswith="ws ").count()})
