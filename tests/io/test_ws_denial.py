"""WebSocket denial responses (``websocket.http.response.*``) are held to the
framing rules of every HTTP/1.1 response (issue 19 finding 14): a body
longer than its Content-Length is never sent, a shorter one is logged and
the client sees the close; 204/304 carry no body. Over a socketpair."""

import logging

from test_ws_flow import upgrade


def denial(status, headers, *parts):
    """An app that denies the handshake with ``status``, ``headers`` and the body in ``parts``."""

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        for index, part in enumerate(parts):
            await send({"type": "websocket.http.response.body", "body": part, "more_body": index < len(parts) - 1})

    return app


def deny(pair, app):
    p = pair(app)
    p.send(upgrade())
    responses = p.until_closed()
    return p, responses


def test_one_piece_longer_than_its_content_length_is_a_500(pair, caplog):
    with caplog.at_level(logging.ERROR, "corral.error"):
        p, responses = deny(pair, denial(403, [(b"content-length", b"5")], b"hello world"))
    assert [(r.status, r.body) for r in responses] == [(500, b"Internal Server Error\n")]
    assert b"hello" not in p.client.received
    assert "longer than its Content-Length" in caplog.text


def test_a_later_piece_past_the_content_length_is_never_sent(pair, caplog):
    with caplog.at_level(logging.ERROR, "corral.error"):
        p, _ = deny(pair, denial(403, [(b"content-length", b"5")], b"hel", b"lo world"))
    head, _, body = p.client.received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ") and b"content-length: 5" in head
    assert body == b"hel"  # then the connection is cut: the client sees a short body
    assert "longer than its Content-Length" in caplog.text


def test_a_body_shorter_than_its_content_length_is_logged_and_closed(pair, caplog):
    with caplog.at_level(logging.ERROR, "corral.error"):
        p, _ = deny(pair, denial(403, [(b"content-length", b"10")], b"hel", b"lo"))
    head, _, body = p.client.received.partition(b"\r\n\r\n")
    assert b"content-length: 10" in head and body == b"hello"
    assert "sent 5 of 10 body bytes" in caplog.text


def test_no_body_on_a_204_and_a_length_that_matches_passes(pair):
    p, responses = deny(pair, denial(204, [], b"dropped"))
    assert [(r.status, r.body) for r in responses] == [(204, b"")]
    assert b"dropped" not in p.client.received
    p, responses = deny(pair, denial(401, [(b"content-length", b"5")], b"he", b"llo"))
    assert [(r.status, r.body) for r in responses] == [(401, b"hello")]
