"""The recipes under deploy/ are valid and do what their comments say (issue 10).

Each recipe's corral options are parsed by corral's own command line; then
corral runs with them as the platform would start it (the app, and where
needed the host and port, swapped for the test's). deploy/haproxy.cfg is
run by tests/integration/test_rolling_restart.py.
"""

from __future__ import annotations

import configparser
import shlex
import signal
import socket
import sys

import yaml

from corral.cli import build_parser
from corral.config import resolve
from corral.supervisor.master import KILL_GRACE
from support import APPS, ROOT, Reader, Server, read_response

DEPLOY = ROOT / "deploy"


def corral_config(args: list[str]):
    """The Config corral would run with, given these command-line arguments."""
    parsed = vars(build_parser().parse_args(args))
    parsed.pop("config", None)
    return resolve(parsed, {}, None)


def for_test(args: list[str]) -> list[str]:
    """The recipe's options, without the app (the test serves its own) and the bind address."""
    replaced = ("--host", "--port", "--workers")
    options, rest = [], iter(args[1:])
    for arg in rest:
        if arg in replaced:
            next(rest)  # and its value
        elif not arg.startswith(tuple(name + "=" for name in replaced)):
            options.append(arg)
    return options


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / name)
    return parser


def test_recipes_are_linked_from_the_docs():
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    assert "<!-- include: deploy/README.md -->" in deployment
    listed = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert str(path.relative_to(DEPLOY)) in listed, f"deploy/README.md does not list {path.name}"


# -- systemd ------------------------------------------------------------------


def test_systemd_unit_options_are_valid():
    service = unit("corral.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/corral")
    config = corral_config(argv[1:])
    assert service["KillMode"] == "mixed"  # TERM to the master only: it stops the workers in order
    assert float(service["TimeoutStopSec"]) >= config.timeout_graceful + KILL_GRACE
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    socket_unit = unit("corral.socket")
    assert socket_unit["Socket"]["ListenStream"].rsplit(":", 1)[1] == "8000"
    assert "corral.socket" in unit("corral.service")["Unit"]["Requires"]


def test_systemd_restart_with_socket_activation_loses_the_queued_connection_to_nobody():
    """As systemd runs it: the socket is systemd's (here, the test's), passed as
    fd 3 with LISTEN_FDS. Stop corral (TERM to the master, KillMode=mixed)
    while a connection waits in the queue: the socket stays open, and the
    next corral answers that connection."""
    argv = shlex.split(unit("corral.service")["Service"]["ExecStart"])
    options = for_test(argv[1:])
    assert "--health-path" in options
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(int(unit("corral.socket")["Socket"]["Backlog"]))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    activate = (
        f"import os, sys; os.dup2({fd}, 3); os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )

    def start() -> Server:
        server = Server("basic:app", *options, "--limit-connections", "1", wait_ready=False, pass_fds=(fd,),
                        prefix=[sys.executable, "-c", activate])
        server.wait_log(rf"serving http://127.0.0.1:{port}")
        server.wait_log(r"master: worker \d+ ready")
        return server

    first = start()
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n")
        first.wait_log(r"sleep start")
        queued = socket.create_connection(("127.0.0.1", port), timeout=10)  # waits: the worker is full
        queued.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first.signal(signal.SIGTERM)
        assert read_response(slow)[2] == b"slept\n"
        assert first.proc.wait(20) == 0
        second = start()
        try:
            response = Reader(queued).response()
            assert response.code == 200
            assert int(response.body) in second.worker_pids()
        finally:
            second.stop()
        slow.close()
        queued.close()
    finally:
        first.stop()
        listener.close()


# -- Kubernetes -----------------------------------------------------------------


def deployment() -> dict:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text()))
    return next(d for d in documents if d["kind"] == "Deployment")


def test_kubernetes_deployment_is_consistent():
    pod = deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["corral"]
    config = corral_config(container["args"])
    assert config.health_path and config.shutdown_delay > 0
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == config.health_path
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[probe["port"]] == config.port
    assert config.host == "0.0.0.0"  # reachable from the kubelet and the Service
    # The kubelet's SIGKILL must not come before corral's own deadline.
    assert pod["terminationGracePeriodSeconds"] >= config.shutdown_delay + config.timeout_graceful + KILL_GRACE
    assert "lifecycle" not in container, "no preStop sleep: --shutdown-delay does it"


def test_kubernetes_readiness_probe_turns_503_on_term(server_factory):
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    config = corral_config(container["args"])
    server = server_factory("basic:app", *for_test(container["args"]), workers=1)
    probe = f"GET {config.health_path} HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe/1.30\r\n\r\n".encode()
    with server.connect() as sock:
        sock.sendall(probe)
        assert Reader(sock).response().code == 200
    mark = server.mark()
    server.signal(signal.SIGTERM)  # the kubelet deletes the pod
    server.wait_log(r"shutdown delay: serving on", start=mark)
    with server.connect() as sock:  # still accepting: endpoints may still route here
        sock.sendall(probe)
        response = Reader(sock).response()
        assert response.code == 503 and response.headers[b"connection"] == b"close"
    server.signal(signal.SIGTERM)  # not the kubelet's way; ends the test without waiting out the delay
    assert server.proc.wait(20) == 0
