"""Options: parsing and precedence through corral.config.resolve (no processes)."""

from __future__ import annotations

import os

import pytest

from corral.config import OPTIONS, Config, ConfigError, resolve


def write(tmp_path, text: str) -> str:
    path = tmp_path / "corral.toml"
    path.write_text(text)
    return str(path)


def test_defaults():
    config = resolve({"app": "m:a"}, {}, None)
    for option in OPTIONS:
        if option.name != "app":
            assert getattr(config, option.name) == option.default, option.name
    assert config.app == "m:a"


def test_file_then_env_then_cli(tmp_path):
    path = write(tmp_path, 'app = "file:app"\nport = 1111\nroot_path = "/file"\nworkers = 3\naccess-log = false\n')
    config = resolve({}, {}, path)
    assert (config.app, config.port, config.root_path, config.workers, config.access_log) == ("file:app", 1111, "/file", 3, False)

    env = {"CORRAL_PORT": "2222", "CORRAL_ROOT_PATH": "/env", "CORRAL_ACCESS_LOG": "yes"}
    config = resolve({}, env, path)
    assert (config.app, config.port, config.root_path, config.workers, config.access_log) == ("file:app", 2222, "/env", 3, True)

    config = resolve({"port": "3333", "app": "cli:app"}, env, path)
    assert (config.app, config.port, config.root_path, config.workers, config.access_log) == ("cli:app", 3333, "/env", 3, True)


def test_config_file_from_the_environment(tmp_path):
    path = write(tmp_path, "[corral]\napp = 'file:app'\nlimit-header-size = 1024\n")
    config = resolve({}, {"CORRAL_CONFIG": path}, None)
    assert (config.app, config.limit_header_size) == ("file:app", 1024)


def test_cli_config_file_wins_over_the_environment_one(tmp_path):
    chosen = write(tmp_path, "app = 'chosen:app'\n")
    other = tmp_path / "other.toml"
    other.write_text("app = 'other:app'\n")
    assert resolve({}, {"CORRAL_CONFIG": str(other)}, chosen).app == "chosen:app"


def test_app_from_the_environment():
    assert resolve({}, {"CORRAL_APP": "env:app"}, None).app == "env:app"


@pytest.mark.parametrize(
    "text, value",
    [("1", True), ("true", True), ("On", True), ("yes", True), ("0", False), ("false", False), ("OFF", False), ("no", False)],
)
def test_boolean_from_the_environment(text, value):
    assert resolve({"app": "m:a"}, {"CORRAL_SERVER_HEADER": text}, None).server_header is value


def test_workers_auto():
    assert resolve({"app": "m:a", "workers": "auto"}, {}, None).workers == (os.cpu_count() or 1)


def test_uds_mode_is_octal():
    assert resolve({"app": "m:a", "uds_mode": "660"}, {}, None).uds_mode == 0o660


@pytest.mark.parametrize(
    "cli, message",
    [
        ({"port": "70000"}, "--port: must be an integer 0..65535 (got '70000')"),
        ({"port": "http"}, "--port: must be an integer (got 'http')"),
        ({"workers": "0"}, "--workers: must be an integer 1..1024 (got '0')"),
        ({"interface": "cgi"}, "--interface: must be one of auto, asgi, wsgi (got 'cgi')"),
        ({"timeout_keep_alive": "-1"}, "--timeout-keep-alive: must be a number of seconds >= 0 (got '-1')"),
        ({"limit_header_size": "10"}, "--limit-header-size: must be an integer >= 256 (got '10')"),
        ({"uds_mode": "999"}, "--uds-mode: must be an octal file mode such as 660 (got '999')"),
        ({"health_path": "healthz"}, "--health-path: must be a path starting with / (no query, no spaces) (got 'healthz')"),
        ({"health_path": "/h?x=1"}, "--health-path: must be a path starting with / (no query, no spaces) (got '/h?x=1')"),
        ({"app": "nocolon"}, "application: must be MODULE:ATTR, e.g. myproject.asgi:app (got 'nocolon')"),
        ({"app": "module:"}, "application: must be MODULE:ATTR, e.g. myproject.asgi:app (got 'module:')"),
    ],
)
def test_bad_cli_values(cli, message):
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a", **cli}, {}, None)
    assert str(info.value) == message


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {"CORRAL_PORT": "eighty"}, None)
    assert str(info.value) == "CORRAL_PORT: must be an integer (got 'eighty')"


def test_bad_file_value_names_the_file_and_key(tmp_path):
    path = write(tmp_path, 'port = "eighty"\n')
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, path)
    assert str(info.value) == f"{path}: port: must be an integer (got 'eighty')"


def test_boolean_in_file_must_be_a_boolean(tmp_path):
    path = write(tmp_path, "workers = true\n")
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, path)
    assert str(info.value) == f"{path}: workers: must be an integer (got True)"


def test_unknown_file_key(tmp_path):
    path = write(tmp_path, "prot = 80\n")
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, path)
    assert str(info.value) == f"{path}: unknown option 'prot' (did you mean 'port'?)"


@pytest.mark.parametrize(
    "key, line",
    [
        ("max-requests", "unknown option 'max_requests' (did you mean 'limit_max_requests'?)"),  # gunicorn's name
        ("graceful_timeout", "unknown option 'graceful_timeout' (did you mean 'timeout_graceful'?)"),
        ("timeout", "unknown option 'timeout' (did you mean 'timeout_worker'?)"),
        ("worker", "unknown option 'worker' (did you mean 'workers'?)"),
        ("zzzqqq", "unknown option 'zzzqqq'"),
    ],
)
def test_unknown_file_key_suggests_the_option(tmp_path, key, line):
    path = write(tmp_path, f"{key} = 3\n")
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, path)
    assert str(info.value) == f"{path}: {line}"


def test_other_servers_names_point_at_real_options():
    from corral.config import OPTIONS_BY_NAME, OTHER_NAMES

    assert set(OTHER_NAMES.values()) <= set(OPTIONS_BY_NAME)
    assert not set(OTHER_NAMES) & set(OPTIONS_BY_NAME)  # a real option is never renamed


def test_unknown_environment_variables_close_to_an_option_are_warned():
    from corral.config import unknown_env_warnings

    environ = {
        "CORRAL_WORKER": "2",  # a typo
        "CORRAL_MAX_REQUESTS": "3",  # gunicorn's name
        "CORRAL_WORKERS": "2",  # real
        "CORRAL_DJANGO_DB": "x",  # the app's own: nothing near an option
        "CORRAL_PURE": "1",  # corral's own switches
        "CORRAL_UPGRADE": "{}",
        "PATH": "/bin",
    }
    assert unknown_env_warnings(environ) == [
        "CORRAL_WORKER is not an option (did you mean CORRAL_WORKERS?); ignored",
        "CORRAL_MAX_REQUESTS is not an option (did you mean CORRAL_LIMIT_MAX_REQUESTS?); ignored",
    ]


def test_invalid_toml(tmp_path):
    path = write(tmp_path, "port = = 80\n")
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, path)
    assert str(info.value).startswith(f"--config: {path} is not valid TOML: ")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    path = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, path)
    assert str(info.value) == f"--config: cannot read {path}: No such file or directory"


def test_no_app():
    with pytest.raises(ConfigError) as info:
        resolve({}, {}, None)
    assert str(info.value) == "no application given: pass MODULE:ATTR (or set CORRAL_APP or app in the config file)"


def test_config_object_rejects_unknown_names():
    with pytest.raises(ConfigError) as info:
        Config(prot=80)
    assert str(info.value) == "argument: unknown option 'prot' (did you mean 'port'?)"


def test_repeatable_options_from_every_source(tmp_path):
    path = write(tmp_path, 'app = "m:a"\nreload-dir = ["src", "lib"]\nreload-include = "*.py"\n')
    config = resolve({}, {"CORRAL_RELOAD_EXCLUDE": "*.tmp, build/*"}, path)
    assert config.reload_dir == ("src", "lib")
    assert config.reload_include == ("*.py",)
    assert config.reload_exclude == ("*.tmp", "build/*")
    assert resolve({"reload_dir": ["a", "b"]}, {}, path).reload_dir == ("a", "b")  # --reload-dir a --reload-dir b


def test_forwarded_allow_ips_from_uvicorns_variable_below_corrals():
    assert resolve({"app": "m:a"}, {}, None).forwarded_allow_ips == "127.0.0.1,::1"
    env = {"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.1"}
    assert resolve({"app": "m:a"}, env, None).forwarded_allow_ips == "10.0.0.0/8,192.0.2.1"
    env["CORRAL_FORWARDED_ALLOW_IPS"] = "*"
    assert resolve({"app": "m:a"}, env, None).forwarded_allow_ips == "*"
    assert resolve({"app": "m:a", "forwarded_allow_ips": "::1"}, env, None).forwarded_allow_ips == "::1"


def test_trusted_peer_lists_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"--proxy-allow-from: 'proxy.local' is not an IP address"):
        resolve({"app": "m:a", "proxy_allow_from": "10.0.0.1,proxy.local"}, {}, None)
    with pytest.raises(ConfigError, match=r"^FORWARDED_ALLOW_IPS: '10.0.0.0/40' is not an IP address"):
        resolve({"app": "m:a"}, {"FORWARDED_ALLOW_IPS": "10.0.0.0/40"}, None)
    path = write(tmp_path, 'app = "m:a"\nforwarded-allow-ips = ["10.0.0.0/8", "::1"]\nproxy-protocol = "v2"\n')
    config = resolve({}, {}, path)
    assert (config.forwarded_allow_ips, config.proxy_protocol) == ("10.0.0.0/8,::1", "v2")


def test_proxy_protocol_composes_with_tls():
    # Issue 19 finding 13: the PROXY header, then the TLS handshake (was refused).
    config = resolve({"app": "m:a", "proxy_protocol": "v2", "ssl_certfile": "cert.pem"}, {}, None)
    assert (config.proxy_protocol, config.ssl_certfile) == ("v2", "cert.pem")


# -- issue 22: the operators' options ------------------------------------------


def test_env_file_sets_options_under_the_real_environment(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text('export CORRAL_WORKERS=3\nCORRAL_PORT="9001"\nCORRAL_ROOT_PATH=/dotenv\nSECRET=x\n')
    config = resolve({"app": "m:a", "env_file": str(env_file)}, {"CORRAL_PORT": "9002"}, None)
    assert (config.workers, config.port, config.root_path) == (3, 9002, "/dotenv")
    config = resolve({"app": "m:a", "env_file": str(env_file), "workers": "5"}, {}, None)
    assert config.workers == 5
    path = write(tmp_path, 'app = "m:a"\nworkers = 7\nroot-path = "/file"\n')  # the env file wins over the TOML file
    config = resolve({"env_file": str(env_file)}, {}, path)
    assert (config.workers, config.root_path) == (3, "/dotenv")


def test_env_file_relative_to_chdir(tmp_path):
    (tmp_path / ".env").write_text("CORRAL_WORKERS=4\n")
    assert resolve({"app": "m:a", "env_file": ".env", "chdir": str(tmp_path)}, {}, None).workers == 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("GOOD=1\nthis is not a line\n", "line 2 is not KEY=VALUE: 'this is not a line'"),
        ("CORRAL_WORKERS=many\n", "workers: must be an integer (got 'many')"),
    ],
)
def test_bad_env_file_is_one_line(tmp_path, text, message):
    env_file = tmp_path / "bad.env"
    env_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a", "env_file": str(env_file)}, {}, None)
    assert str(info.value).startswith("--env-file ") and str(info.value).endswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_missing_env_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a", "env_file": str(tmp_path / "nope.env")}, {}, None)
    assert str(info.value) == f"--env-file: cannot read {tmp_path / 'nope.env'}: No such file or directory"


def test_unknown_user_and_group_are_refused():
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a", "user": "no-such-user-for-corral"}, {}, None)
    assert str(info.value) == "--user: no such user on this system (got 'no-such-user-for-corral')"
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a", "group": "no-such-group-for-corral"}, {}, None)
    assert str(info.value) == "--group: no such group on this system (got 'no-such-group-for-corral')"
    config = resolve({"app": "m:a", "user": "root", "group": "0"}, {}, None)
    assert (config.user, config.group) == ("root", "0")
    assert resolve({"app": "m:a", "user": "54321"}, {}, None).user == "54321"  # a uid with no passwd entry (containers)


def test_umask_is_octal():
    assert resolve({"app": "m:a", "umask": "027"}, {}, None).umask == 0o027
    with pytest.raises(ConfigError, match=r"^--umask: must be an octal file mode"):
        resolve({"app": "m:a", "umask": "9"}, {}, None)


def test_short_flags_mean_what_they_mean_in_gunicorn(tmp_path):
    from corral.cli import build_parser

    path = write(tmp_path, 'app = "m:a"\n')
    args = vars(build_parser().parse_args(["-w", "3", "-c", path, "-b", "127.0.0.1:0", "-b", "unix:/tmp/a,b.sock"]))
    assert args == {"workers": "3", "config": path, "bind": ["127.0.0.1:0", "unix:/tmp/a,b.sock"]}
    help_text = build_parser().format_help()
    assert "-w, --workers N|auto" in help_text and "-c, --config FILE" in help_text
    assert "-b, --bind ADDRESS" in help_text


def test_memory_cap_and_lifetime_values():
    config = resolve({"app": "m:a", "workers_max_rss": "512", "workers_lifetime": "3600", "workers_lifetime_jitter": "600"}, {}, None)
    assert (config.workers_max_rss, config.workers_lifetime, config.workers_lifetime_jitter) == (512, 3600.0, 600.0)
    with pytest.raises(ConfigError, match=r"^--workers-max-rss: must be an integer >= 0"):
        resolve({"app": "m:a", "workers_max_rss": "-1"}, {}, None)


def test_python_config_file_options_and_hooks(tmp_path):
    path = tmp_path / "corral.conf.py"
    path.write_text(
        "from __future__ import annotations\nimport os\n\napp = 'm:a'\nworkers = 3\nreload_dir = ['src']\n"
        "_helper = 1\n\n\ndef post_fork(worker):\n    pass\n\n\ndef on_exit(server):\n    pass\n"
    )
    config = resolve({"workers": "5"}, {}, str(path))
    assert (config.app, config.workers, config.reload_dir) == ("m:a", 5, ("src",))
    assert sorted(config.hooks) == ["on_exit", "post_fork"]
    assert resolve({}, {"CORRAL_CONFIG": str(path)}, None).hooks.keys() == {"on_exit", "post_fork"}
    assert resolve({"app": "m:a"}, {}, None).hooks == {}


def test_python_config_file_mistakes(tmp_path):
    path = tmp_path / "corral.conf.py"
    path.write_text("when_ready = 1\n")
    with pytest.raises(ConfigError, match=r"hook when_ready must be a function$"):
        resolve({"app": "m:a"}, {}, str(path))
    path.write_text("raise KeyError('DATABASE_URL')\n")
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, str(path))
    assert str(info.value) == f"--config: {path} raised KeyError: 'DATABASE_URL'"
    with pytest.raises(ConfigError) as info:
        resolve({"app": "m:a"}, {}, str(tmp_path / "missing.conf.py"))
    assert str(info.value) == f"--config: cannot read {tmp_path / 'missing.conf.py'}: No such file or directory"


def test_a_hook_that_raises_is_logged_and_returned(caplog):
    config = Config()
    calls = []
    config.hooks = {"on_reload": lambda server: calls.append(server), "on_exit": lambda server: 1 / 0}
    assert config.run_hook("on_reload", "master") is None and calls == ["master"]
    assert config.run_hook("when_ready", "master") is None  # not defined: nothing to do
    logger = __import__("logging").getLogger("corral.error")
    logger.addHandler(caplog.handler)
    try:
        failed = config.run_hook("on_exit", "master")
    finally:
        logger.removeHandler(caplog.handler)
    assert isinstance(failed, ZeroDivisionError)
    assert "on_exit hook raised ZeroDivisionError: division by zero" in caplog.text and "Traceback" in caplog.text


def test_bind_forms():
    from corral.config import parse_bind

    assert parse_bind("127.0.0.1:8080") == ("tcp", "127.0.0.1", 8080)
    assert parse_bind("tcp://example.com:0") == ("tcp", "example.com", 0)
    assert parse_bind("[::1]:443") == ("tcp", "::1", 443)
    assert parse_bind("[::]") == ("tcp", "::", 8000)
    assert parse_bind("localhost") == ("tcp", "localhost", 8000)  # gunicorn: HOST alone is port 8000
    assert parse_bind("unix:/run/a.sock") == parse_bind("unix:///run/a.sock") == ("unix", "/run/a.sock")
    assert parse_bind("fd://3") == ("fd", 3)
    # A list item is taken whole (a path may hold a comma); a string from the environment is split.
    config = resolve({"app": "m:a", "bind": ["unix:/tmp/a,b.sock"]}, {"CORRAL_BIND": "x:1"}, None)
    assert config.bind == ("unix:/tmp/a,b.sock",)
    assert resolve({"app": "m:a"}, {"CORRAL_BIND": "127.0.0.1:1, unix:/tmp/c"}, None).bind == ("127.0.0.1:1", "unix:/tmp/c")
