"""HTTP/2 for the interfaces: nothing of its own.

The ASGI ``http`` cycle is the one ``interfaces/asgi.py`` writes for every
protocol: each HTTP/2 stream (``io/h2.py``) is a request with the same
fields, and ``H2Connection`` implements the exchange verbs the cycle sends
through (HEADERS and DATA, the stream's window, RST_STREAM). ``H2Handler``
is that same ``ASGIHandler``.

WSGI apps run over HTTP/2 through ``interfaces/wsgi.py``'s ``WSGIOverASGI``
(an ASGI app for that cycle), with the environ, body spooling,
``--threads`` and stuck-thread check of HTTP/1.1's WSGI.
"""

from __future__ import annotations

from .asgi import ASGIHandler

H2Handler = ASGIHandler  # one ASGI cycle for every protocol
