"""Test app: what the application sees of the client behind a proxy."""

import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    view = {
        "client": scope["client"],
        "scheme": scope["scheme"],
        "host": dict(scope["headers"]).get(b"host", b"").decode("latin-1"),
        "tls": scope.get("extensions", {}).get("tls"),
        "proxy": scope.get("extensions", {}).get("corral.proxy"),
    }
    if view["proxy"] and "unique_id" in view["proxy"]:
        view["proxy"] = dict(view["proxy"], unique_id=view["proxy"]["unique_id"].hex())
    body = json.dumps(view).encode()
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


KEYS = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "HTTPS", "SSL_PROTOCOL", "SSL_CIPHER",
        "SSL_TLS_SNI", "corral.proxy_unique_id")


def wsgi(environ, start_response):
    view = {key: environ.get(key) for key in KEYS}
    if view["corral.proxy_unique_id"] is not None:
        view["corral.proxy_unique_id"] = view["corral.proxy_unique_id"].hex()
    body = json.dumps(view).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
