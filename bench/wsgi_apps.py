"""WSGI applications served by the benchmark's wsgi-* scenarios (see bench/run.py).

The same module runs under corral, Granian (--interface wsgi) and gunicorn
(gthread); Flask and Django come from the bench virtualenv (or corral's test
extra).
"""

import time

HELLO_BODY = b"Hello, world!"
HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO_BODY)))]


def hello(environ, start_response):
    """Plain-text hello world: 200, text/plain, b'Hello, world!'."""
    start_response("200 OK", HELLO_HEADERS)
    return [HELLO_BODY]


def echo(environ, start_response):
    """POST: answers with the request body (10 KB in the benchmark)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


def sleep(environ, start_response):
    """Waits 10 ms (a database call) and answers hello: threads matter here."""
    time.sleep(0.010)
    start_response("200 OK", HELLO_HEADERS)
    return [HELLO_BODY]


def _flask_app():
    from flask import Flask, jsonify

    app = Flask(__name__)

    @app.get("/json")
    def json_api():
        return jsonify(message="Hello, world!", items=[1, 2, 3])

    return app


def _django_app():
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="bench",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": []}],
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _django_view(request):
    from django.http import HttpResponse
    from django.template import engines

    template = engines["django"].from_string("Hello, {{ name }}!")
    return HttpResponse(template.render({"name": "world"}), content_type="text/plain")


def __getattr__(name):
    # Flask and Django are imported only by the scenario that serves them.
    global flask_app, django_app, urlpatterns
    if name == "flask_app":
        flask_app = _flask_app()
        return flask_app
    if name == "django_app":
        django_app = _django_app()
        return django_app
    if name == "urlpatterns":
        from django.urls import path

        urlpatterns = [path("", _django_view)]
        return urlpatterns
    raise AttributeError(name)
