"""A real haproxy in front of corral, for the tests of client identity behind proxies.

``Haproxy(config, files)`` writes the configuration (``{port}`` is the
frontend's port, chosen free on 127.0.0.1; ``{dir}`` holds ``files``), runs ``haproxy -db`` in the foreground and
waits until the frontend accepts connections. Tests that need it are
skipped, with the reason, where haproxy is not installed (``make test``
installs the Debian package: ``make test-packages``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from support import wait_until

HAPROXY = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy") or None
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (`make test-packages` installs the Debian package)"
)

DEFAULTS = """
global
    maxconn 256
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 30s
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect_from(source: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port from another loopback address of this machine."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


class Haproxy:
    def __init__(self, config: str, files: dict[str, bytes] | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="corral-haproxy-")
        for name, data in (files or {}).items():  # certificates: {dir}/NAME in the config
            with open(os.path.join(self.dir, name), "wb") as handle:
                handle.write(data)
        self.config_path = os.path.join(self.dir, "haproxy.cfg")
        with open(self.config_path, "w") as handle:
            handle.write(DEFAULTS + config.format(port=self.port, dir=self.dir))
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", self.config_path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            wait_until(self._listening, timeout=10, message="haproxy listening")
        except AssertionError:
            self.stop()
            raise AssertionError("haproxy did not start:\n" + self.proc.stderr.read().decode("utf-8", "replace"))

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited:\n" + self.proc.stderr.read().decode("utf-8", "replace"))
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
