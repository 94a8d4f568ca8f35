"""--log-config (issue 22): a logging.config file (JSON, YAML, INI) governs
corral's loggers, corral.error and corral.access; access lines go through
logging only when the file gives corral.access handlers of its own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from support import APPS, ROOT, read_response, wait_until

ACCESS_FORMAT = "ACCESS %(client_addr)s | %(request_line)s | %(status_code)s | %(message)s"


def get(server, path: str = "/pid") -> bytes:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    return body


def access_config(path) -> dict:
    return {
        "version": 1,
        "formatters": {"access": {"format": ACCESS_FORMAT}},
        "handlers": {"access_file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "access"}},
        "loggers": {"corral.access": {"handlers": ["access_file"], "level": "INFO", "propagate": False}},
    }


def test_json_config_sends_access_lines_to_a_file_with_its_format(server_factory, tmp_path):
    log = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps(access_config(log)))
    server = server_factory("basic:app", "--log-config", str(config), workers=2)  # corral.error: still stderr
    pids = {int(get(server, f"/pid?{i}")) for i in range(4)}
    assert pids <= server.worker_pids()
    wait_until(lambda: log.exists() and log.read_text().count("\n") == 4, message="4 access lines in the file")
    seen = set()
    for line in log.read_text().splitlines():  # two workers: in the order each wrote
        match = re.fullmatch(
            r'ACCESS 127\.0\.0\.1:\d+ \| GET /pid\?(\d) HTTP/1\.1 \| 200 \| 127\.0\.0\.1:\d+ - "GET /pid\?\1 HTTP/1\.1" 200', line
        )
        assert match, line
        seen.add(int(match.group(1)))
    assert seen == {0, 1, 2, 3}
    assert not [line for line in server.lines if "GET /pid" in line]  # none on stderr
    # USR1 reopens the config's file handlers too (logrotate).
    log.rename(tmp_path / "access.log.1")
    mark = server.mark()
    server.signal(signal.SIGUSR1)
    wait_until(lambda: log.exists(), message="the access log to be reopened")  # the master's own handler
    # The master relays USR1; a worker may serve a request before it handles
    # its own signal, and that line rightly goes to the old file. Keep asking.
    sent = []

    def after_in_new_file() -> bool:
        sent.append(len(sent))
        get(server, f"/pid?after{sent[-1]}")
        return "GET /pid?after" in log.read_text()

    wait_until(after_in_new_file, timeout=10, interval=0.05, message="a worker to write to the new file")
    both = lambda: (tmp_path / "access.log.1").read_text() + log.read_text()  # noqa: E731
    wait_until(lambda: all(f"GET /pid?after{i} " in both() for i in sent), message="every line in one file or the other")
    assert server.mark() >= mark
    assert server.stop() == 0


def test_json_config_with_an_access_log_format(server_factory, tmp_path):
    log = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    settings = access_config(log)
    settings["formatters"]["access"]["format"] = "%(message)s"
    config.write_text(json.dumps(settings))
    server = server_factory("basic:app", "--log-config", str(config), "--access-log-format", "combined")
    with server.connect() as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nUser-Agent: probe/1\r\nConnection: close\r\n\r\n")
        read_response(sock)
    wait_until(lambda: log.exists() and log.read_text().endswith("\n"), message="the access line")
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /pid HTTP/1\.1" 200 \d+ "-" "probe/1" \d+\.\d{6}\n',
                        log.read_text()), log.read_text()


INI = """
[loggers]
keys = root, error

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers =

[logger_error]
qualname = corral.error
level = INFO
handlers = file
propagate = 0

[handler_file]
class = FileHandler
args = ({path!r},)
formatter = plain

[formatter_plain]
format = ERRORLOG %(levelname)s %(message)s
"""


def test_ini_config_governs_corral_error_and_leaves_the_access_fast_path(server_factory, tmp_path):
    log = tmp_path / "corral.log"
    config = tmp_path / "logging.ini"
    config.write_text(INI.format(path=str(log)))
    server = server_factory("basic:app", "--log-config", str(config), wait_ready=False)
    serving = wait_until(lambda: re.search(r"ERRORLOG INFO corral master \d+ serving http://127\.0\.0\.1:(\d+)",
                                           log.read_text() if log.exists() else ""), message="the serving line")
    server.port = int(serving.group(1))
    wait_until(lambda: re.search(r"ERRORLOG INFO master: worker \d+ ready", log.read_text()), message="a ready worker")
    get(server)
    # corral.access is not in the file: its lines keep corral's batched writes to stderr.
    server.wait_log(r'\[\d+\] 127\.0\.0\.1:\d+ - "GET /pid HTTP/1\.1" 200')
    assert server.stop() == 0
    assert not [line for line in server.lines if "[INFO]" in line]  # corral.error went to the file only
    assert re.search(r"ERRORLOG INFO master \d+: all workers gone, sockets closed; exit 0", log.read_text())


def test_yaml_config(server_factory, tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is in the test extra; without it the YAML form is not tested")
    log = tmp_path / "access.log"
    config = tmp_path / "logging.yaml"
    import yaml

    config.write_text(yaml.safe_dump(access_config(log)))
    server = server_factory("basic:app", "--log-config", str(config))
    get(server)
    wait_until(lambda: log.exists() and log.read_text().startswith("ACCESS 127.0.0.1:"), message="the access line")


def corral(*args: str, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "corral", "basic:app", "--app-dir", str(APPS), "--port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=20, env=env)


@pytest.mark.parametrize("name, text, message", [
    ("missing.json", None, "cannot read {path}: No such file or directory"),
    ("bad.json", "{not json", "{path}: JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("list.json", "[1, 2]", "{path} must hold a mapping (logging.config.dictConfig's schema)"),
    ("noversion.json", '{"loggers": {}}', "{path}: ValueError: dictionary doesn't specify a version"),
    ("badhandler.json", json.dumps({"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}),
     "{path}: ValueError: Unable to configure handler 'h' ("),
    ("nosections.ini", "[loggers]\nkeys = root\n", "{path}: KeyError: 'formatters'"),
    ("bad.yaml", "version: [1\n", "{path}: "),
])
def test_a_bad_file_is_one_line_exit_2(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    result = corral("--log-config", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("corral: error: --log-config: " + message.format(path=path)), result.stderr


def test_yaml_without_pyyaml_is_one_clear_line(tmp_path):
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "yaml.py").write_text("raise ImportError('PyYAML hidden for this test')\n")
    path = tmp_path / "logging.yaml"
    path.write_text("version: 1\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "hide"))
    result = corral("--log-config", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr == (
        f"corral: error: --log-config: {path} is YAML, which needs PyYAML: pip install 'corral[yaml]' (or pyyaml); "
        "or give the same dictionary as JSON\n"
    )
