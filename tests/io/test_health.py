"""--health-path answers next to the app: never counted as the app's requests
for --limit-max-requests (a worker behind a load balancer that only checks
its health must not be recycled, again and again)."""

from __future__ import annotations

from corral.io.health import HealthCheck

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
APP = b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n"


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def checked(pair, max_requests: int):
    """A pair with the health check in front of the app, and --limit-max-requests
    as the worker sets it (0: none)."""
    p = pair(app, health_path="/healthz")
    state = p.state
    state.handler = HealthCheck("/healthz", state.handler, False)
    recycled = []
    if max_requests:
        state.limit_max_requests(max_requests, lambda: recycled.append(state.requests))
    else:  # none: the state as the worker leaves it, whatever its default
        state.on_max_requests = lambda: recycled.append(state.requests)
    return p, recycled


def test_health_checks_alone_never_recycle(pair):
    p, recycled = checked(pair, 0)
    p.send(HEALTH * 3)
    assert [r.status for r in p.responses_count(3)] == [200, 200, 200]
    p.send(APP + HEALTH)
    assert [r.body for r in p.responses_count(5)[3:]] == [b"app", b"ok\n"]
    assert recycled == [] and p.state.requests == 1


def test_max_requests_counts_the_app_requests_only(pair):
    p, recycled = checked(pair, 2)
    p.send(HEALTH + APP + HEALTH + HEALTH + APP + HEALTH + APP)
    assert len(p.responses_count(7)) == 7
    assert recycled == [2]  # once, at the second request of the app
