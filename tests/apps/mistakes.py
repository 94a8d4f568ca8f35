"""Apps given the wrong way (issue 20): each is refused at boot in one line,
or, where the signature cannot tell, answered 500 on every request."""


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi"})


class AsgiClass:
    async def __call__(self, scope, receive, send):
        await asgi(scope, receive, send)


asgi_object = AsgiClass()


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi"]


def create_app():
    """A factory: to be passed with --factory."""
    return asgi


def four_arguments(a, b, c, d):
    raise AssertionError("never called")


def factory_raising():
    raise TypeError("the factory's own TypeError")


class RaisesOnCall:
    """Its signature (``*args``) fits any interface; calling it raises at
    once, before any coroutine or iterable exists."""

    def __call__(self, *args):
        raise TypeError(f"create_app() takes 0 positional arguments but {len(args)} were given")


raises_on_call = RaisesOnCall()
