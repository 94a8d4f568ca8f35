from django.contrib import admin

from .models import Note, Upload

admin.site.register(Note)
admin.site.register(Upload)
