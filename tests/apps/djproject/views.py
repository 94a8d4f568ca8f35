import asyncio
import hashlib

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from .notes.models import Note, Upload


def home(request):
    return render(request, "home.html", {"name": request.GET.get("name", "world"), "form_url": reverse("form")})


def form(request):
    if request.method == "POST":
        return HttpResponse(f"thanks, {request.POST['name']}", content_type="text/plain")
    return render(request, "form.html")


def stream(request):
    return StreamingHttpResponse((f"part {i}\n" for i in range(int(request.GET.get("n", "5")))), content_type="text/plain")


@csrf_exempt
def upload(request):
    upload = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    Upload.objects.create(name=upload.name, size=upload.size, sha256=digest.hexdigest())  # the ORM, written
    return JsonResponse({"name": upload.name, "size": upload.size, "sha256": digest.hexdigest(),
                         "note": request.POST.get("note")})


def json_api(request):
    return JsonResponse({"items": [{"id": i, "name": f"item {i}"} for i in range(3)]})


def error(request):
    raise RuntimeError("django boom")


def notes(request):
    """GET: the notes as text, from the ORM. POST (logged in, with CSRF): add one."""
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('admin:login')}?next={request.path}")
        Note.objects.create(text=request.POST["text"])
        return redirect("notes")
    lines = [f"{note.id}: {note.text}\n" for note in Note.objects.order_by("id")]
    return HttpResponse("".join(lines) or "no notes\n", content_type="text/plain; charset=utf-8")


def notes_stream(request):
    """The query runs inside the iterable, at the first next(): app code
    stepped by the server."""
    rows = (f"{note.id}: {note.text}\n" for note in Note.objects.order_by("id").iterator())
    return StreamingHttpResponse(rows, content_type="text/plain; charset=utf-8")


@login_required
def whoami(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"user": request.user.username, "visits": request.session["visits"]})


async def async_view(request):
    """An async view: under ASGI on the server's loop; under WSGI through
    asgiref's async_to_sync (which needs a thread with no running loop)."""
    await asyncio.sleep(0)
    count = await Note.objects.acount()
    users = [user async for user in _usernames()]
    return JsonResponse({"notes": count, "users": users})


def _usernames():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.order_by("username").values_list("username", flat=True)
