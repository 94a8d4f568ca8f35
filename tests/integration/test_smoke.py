import httpx

from support import Reader


def test_hello_keep_alive(server_factory):
    server = server_factory()
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            response = client.get("/")
            assert response.status_code == 200
            assert response.text == "Hello, world!"
            assert response.headers["server"] == "corral"
            assert "date" in response.headers


def test_pipelined_in_order(server_factory):
    server = server_factory()
    with server.connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        first, second, third = reader.response(), reader.response(), reader.response()
    assert first.body.isdigit()
    assert second.body == b"abc"
    assert third.body == b"Hello, world!"
