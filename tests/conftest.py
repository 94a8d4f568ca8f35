import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Server  # noqa: E402

ACCESS_LINE = re.compile(r'\[\d+\] \S+ - "')  # the default access log's line


@pytest.fixture
def server_factory():
    servers = []

    def start(*args, **kwargs):
        server = Server(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            try:
                server.stop()
            except AssertionError:
                server.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    """A failed test shows the log of each corral it started (the last 80
    lines): a failure that happened once can be read, not only re-run."""
    Server.started.clear()
    yield
    Server.started.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for index, server in enumerate(Server.started):
            # Without the access log's lines, which would crowd out the rest.
            lines = [line for line in server.lines if not ACCESS_LINE.search(line)]
            report.sections.append((f"corral {index} log (pid {server.proc.pid}, last 80 lines, no access log)",
                                    "\n".join(lines[-80:])))
