"""The real command line: help, one-line errors with exit 2, precedence."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from support import APPS, ROOT, Server


def corral(*args: str, env=None, timeout: float = 30) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environ
    )


def assert_usage_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == f"corral: error: {message}\n"


def test_version():
    result = corral("--version")
    assert (result.returncode, result.stdout) == (0, "corral 0.1.0\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (("basic:app", "--port", "99999"), "--port: must be an integer 0..65535 (got '99999')"),
        (("basic:app", "--port", "http"), "--port: must be an integer (got 'http')"),
        (("basic:app", "--workers", "none"), "--workers: must be an integer (got 'none')"),
        (("basic:app", "--lifespan", "maybe"), "--lifespan: must be one of auto, on, off (got 'maybe')"),
        (("basic",), "application: must be MODULE:ATTR, e.g. myproject.asgi:app (got 'basic')"),
        ((), "no application given: pass MODULE:ATTR (or set CORRAL_APP or app in the config file)"),
        (("basic:app", "--no-such-option"), "unknown option --no-such-option"),
        (("basic:app", "--port"), "argument --port: expected one argument"),
    ],
)
def test_bad_command_line(args, message):
    assert_usage_error(corral(*args), message)


def test_bad_environment_value():
    assert_usage_error(corral("basic:app", env={"CORRAL_TIMEOUT_KEEP_ALIVE": "soon"}),
                       "CORRAL_TIMEOUT_KEEP_ALIVE: must be a number of seconds (got 'soon')")


def test_bad_toml_value(tmp_path):
    path = tmp_path / "corral.toml"
    path.write_text("[corral]\nlimit-header-size = 'big'\n")
    assert_usage_error(corral("basic:app", "--config", str(path)), f"{path}: limit_header_size: must be an integer (got 'big')")


def test_bad_toml_syntax(tmp_path):
    path = tmp_path / "corral.toml"
    path.write_text("port = [\n")
    result = corral("basic:app", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"corral: error: --config: {path} is not valid TOML: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module:app", "cannot import module 'no_such_module': no module named 'no_such_module'"),
        ("no_such_package.sub:app", "cannot import module 'no_such_package.sub': no module named 'no_such_package'"),
        ("basic:no_such_attr", "attribute 'no_such_attr' not found in module 'basic'"),
        ("basic:STARTED", "basic:STARTED is not callable (got list); an ASGI or WSGI app is"),
    ],
)
def test_app_that_cannot_be_loaded(spec, message):
    result = corral(spec, "--app-dir", str(APPS), "--host", "127.0.0.1", "--port", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("corral: error:")] == [f"corral: error: {message}"]
    assert lines[-1] == f"corral: error: {message}"


def scope_root_path(server: Server) -> str:
    with httpx.Client(base_url=server.url) as client:
        return client.get("/scope").json()["root_path"]


def test_precedence_through_the_real_cli(server_factory, tmp_path):
    """CLI > env > file, observed in the scope's root_path."""
    path = tmp_path / "corral.toml"
    path.write_text("[corral]\nroot-path = '/file'\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    from_file = server_factory("h1_app:app", "--config", str(path), env=clean)
    from_env = server_factory("h1_app:app", "--config", str(path), env={**clean, "CORRAL_ROOT_PATH": "/env"})
    from_cli = server_factory("h1_app:app", "--config", str(path), "--root-path", "/cli",
                              env={**clean, "CORRAL_ROOT_PATH": "/env"})
    from_default = server_factory("h1_app:app", env=clean)
    assert scope_root_path(from_file) == "/file"
    assert scope_root_path(from_env) == "/env"
    assert scope_root_path(from_cli) == "/cli"
    assert scope_root_path(from_default) == ""


def test_config_file_from_the_environment(server_factory, tmp_path):
    path = tmp_path / "corral.toml"
    path.write_text("root_path = '/via-env-file'\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    server = server_factory("h1_app:app", env={**clean, "CORRAL_CONFIG": str(path)})
    assert scope_root_path(server) == "/via-env-file"
