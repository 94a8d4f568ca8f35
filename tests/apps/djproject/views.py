import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt


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
    return JsonResponse({"name": upload.name, "size": upload.size, "sha256": digest.hexdigest(),
                         "note": request.POST.get("note")})


def json_api(request):
    return JsonResponse({"items": [{"id": i, "name": f"item {i}"} for i in range(3)]})


def error(request):
    raise RuntimeError("django boom")
