"""A Flask app, unchanged, for tests/integration/test_wsgi_frameworks.py."""

import asyncio
import hashlib

from flask import Flask, Response, jsonify, request, stream_with_context, url_for

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask"


@app.get("/json")
def json_api():
    return jsonify(items=[{"id": i, "name": f"item {i}"} for i in range(3)], next=url_for("json_api", page=2))


@app.post("/echo")
def echo():
    data = request.get_data()
    return Response(data, mimetype="application/octet-stream", headers={"X-Length": str(len(data))})


@app.post("/form")
def form():
    return jsonify(name=request.form["name"], tags=request.form.getlist("tag"))


@app.post("/upload")
def upload():
    upload = request.files["file"]
    data = upload.read()
    return jsonify(filename=upload.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form.get("note"))


@app.get("/stream")
def stream():
    def generate():
        for i in range(5):
            yield f"line {i} of {request.args.get('who', 'nobody')}\n"
    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/error")
def error():
    raise RuntimeError("flask boom")


async def _later(value):
    await asyncio.sleep(0)
    return value


@app.get("/async")
async def async_view():
    """Flask runs an async view with asgiref's async_to_sync: it needs a thread with no running loop."""
    return jsonify(answer=await _later(41) + 1)


@app.get("/asyncio-run")
def asyncio_run():
    return jsonify(answer=asyncio.run(_later(42)))
