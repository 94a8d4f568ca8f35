from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("form/", views.form, name="form"),
    path("stream/", views.stream, name="stream"),
    path("upload/", views.upload, name="upload"),
    path("json/", views.json_api, name="json"),
    path("error/", views.error, name="error"),
    path("notes/", views.notes, name="notes"),
    path("notes/stream/", views.notes_stream, name="notes-stream"),
    path("whoami/", views.whoami, name="whoami"),
    path("async/", views.async_view, name="async"),
    path("admin/", admin.site.urls),
]
