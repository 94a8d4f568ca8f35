from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "djproject.notes"
    label = "notes"
