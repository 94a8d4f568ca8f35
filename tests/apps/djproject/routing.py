"""The project's ASGI application with Django Channels: HTTP goes to Django,
WebSockets to the consumers, behind Channels' session and auth middleware
and its origin check (``ProtocolTypeRouter``, as Channels documents).
``corral djproject.routing:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")
django_asgi_app = get_asgi_application()  # before importing anything that touches models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from .notes.consumers import NotesConsumer, RoomConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
        path("ws/room/<str:room>/", RoomConsumer.as_asgi()),
        path("ws/notes/", NotesConsumer.as_asgi()),
    ]))),
})
