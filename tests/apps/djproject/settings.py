"""A real Django project for tests/integration/test_wsgi_frameworks.py and
test_wsgi_django.py: sqlite with migrations, the admin, sessions, CSRF, an
app with a model (``notes``), uploads, a streaming view, and an async view
for ASGI (``djproject.asgi``); WebSocket consumers with Django Channels
(``djproject.routing``, test_compat_channels.py).

The database file is ``$CORRAL_DJANGO_DB`` (test_wsgi_django.py migrates a
fresh one in a temporary directory); without it, a file in the temporary
directory that views not touching the database never create.
"""

import importlib.util
import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "corral-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]  # testserver: Django's test Client, the oracle
ROOT_URLCONF = "djproject.urls"
WSGI_APPLICATION = "djproject.wsgi.application"
ASGI_APPLICATION = "djproject.asgi.application"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djproject.notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    *(["whitenoise.middleware.WhiteNoiseMiddleware"] if importlib.util.find_spec("whitenoise") else []),
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CORRAL_DJANGO_DB") or os.path.join(tempfile.gettempdir(), f"corral-djproject-{os.getuid()}.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Tests only: a fast hasher (the default PBKDF2 takes most of a second per login on a shared core).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
STATIC_URL = "static/"
# collectstatic's target (test_wsgi_django.py fills it), served by WhiteNoise.
STATIC_ROOT = os.environ.get("CORRAL_DJANGO_STATIC") or os.path.join(tempfile.gettempdir(), f"corral-djproject-static-{os.getuid()}")
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # larger uploads go through Django's temporary files
# Django Channels (djproject.routing): the in-memory layer, one worker's groups.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
