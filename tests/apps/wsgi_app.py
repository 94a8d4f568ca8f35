"""WSGI (PEP 3333) test app."""

import json
import threading


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/environ":
        keys = (
            "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "CONTENT_TYPE",
            "CONTENT_LENGTH", "HTTP_HOST", "HTTP_X_DUP", "REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT",
            "wsgi.url_scheme", "wsgi.version", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
        )
        view = {key: environ.get(key) for key in keys}
        if "HTTPS" in environ:
            view["HTTPS"] = environ["HTTPS"]
        view["in_main_thread"] = threading.current_thread() is threading.main_thread()
        body = json.dumps(view).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("201 Created", [("Content-Type", "application/octet-stream"), ("X-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (part for part in (b"a,", b"b,", b"c"))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written,")
        return [b"returned"]
    if path == "/error":
        raise RuntimeError("wsgi boom")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello from WSGI"]


class StarArgs:
    """A WSGI app whose signature hides its two arguments from auto-detection."""

    def __call__(self, *args):
        return app(*args)


star_app = StarArgs()


class ClassBased:
    """A WSGI app as a callable object, as Flask and Django are."""

    def __call__(self, environ, start_response):
        return app(environ, start_response)


class_app = ClassBased()
