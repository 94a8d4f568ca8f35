"""Every option corral has, in one table, and the rules that merge them.

An option is declared once in ``OPTIONS``; the CLI (``cli.py``), the
``CORRAL_<NAME>`` environment variables, the TOML file given with
``--config`` and the docs' options reference (docs/configuration.md) are all derived from it.
Precedence: CLI > environment > file > defaults.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .proto.forwarded import TrustedPeers


class ConfigError(Exception):
    """A bad option value; the CLI prints it on one line and exits 2."""


# -- value parsers: each takes a str (CLI, env) or a TOML value -------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false")


def _int_range(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError("must be an integer") from None
        if number < low or (high is not None and number > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"must be an integer {bound}")
        return number

    return parse


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number of seconds") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError("must be a number of seconds >= 0")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _optional_text(value: Any) -> str | None:
    return _text(value) or None


def _app_spec(value: Any) -> str | None:
    text = _optional_text(value)
    if text is not None:
        module, _, attrs = text.partition(":")
        if not module.strip() or not attrs.strip():
            raise ValueError("must be MODULE:ATTR, e.g. myproject.asgi:app")
    return text


def _workers(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return os.cpu_count() or 1
    return _int_range(1, 1024)(value)


def _mode(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        try:
            number = int(str(value), 8)
        except ValueError:
            raise ValueError("must be an octal file mode such as 660") from None
    if not 0 <= number <= 0o7777:
        raise ValueError("must be an octal file mode such as 660")
    return number


def _optional_int(low: int) -> Callable[[Any], int | None]:
    parse = _int_range(low)

    def parse_optional(value: Any) -> int | None:
        if value is None or value == "":
            return None
        return parse(value)

    return parse_optional


def _list(value: Any) -> tuple[str, ...]:
    """A repeatable option: a TOML list, repeated CLI flags, or a comma-separated string."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            items.extend(_list(item))
    else:
        raise ValueError("must be a string or a list of strings")
    return tuple(item for item in items if item)


def _bind(value: Any) -> str | None:
    """HOST:PORT (IPv6 as [::1]:PORT), or empty for off."""
    text = _optional_text(value)
    if text is not None:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9100")
    return text


BIND_FORMS = "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"


def parse_bind(text: str) -> tuple:
    """One --bind, in gunicorn's forms: ``("tcp", host, port)``, ``("unix", path)``
    or ``("fd", n)``. ``HOST`` alone means port 8000, as in gunicorn."""
    text = text.strip()
    if text.startswith(("unix:", "unix://")):
        path = text[7:] if text.startswith("unix://") else text[5:]
        if not path:
            raise ValueError(f"{text!r}: unix: needs a path, e.g. unix:/run/corral.sock")
        return ("unix", path)
    if text.startswith("fd://"):
        number = text[5:]
        if not number.isdigit():
            raise ValueError(f"{text!r}: fd:// needs a descriptor number, e.g. fd://3")
        return ("fd", int(number))
    address = text[6:] if text.startswith("tcp://") else text
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not {BIND_FORMS}")
        port = rest[1:] if rest else "8000"
    elif ":" in address:
        host, _, port = address.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:8000")
    else:
        host, port = address, "8000"
    if not host or "/" in host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not {BIND_FORMS}")
    return ("tcp", host, int(port))


def _binds(value: Any) -> tuple[str, ...]:
    """--bind, repeatable: CLI flags or a TOML list (each item whole, so a UNIX
    path may hold a comma), or a comma-separated string (environment)."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [item.strip() if isinstance(item, str) else item for item in value]
        if not all(isinstance(item, str) for item in items):
            raise ValueError("must be a string or a list of strings")
    else:
        raise ValueError("must be a string or a list of strings")
    items = [item for item in items if item]
    seen = set()
    for item in items:
        spec = parse_bind(item)
        if spec in seen and spec[-1] != 0:  # port 0 twice: two free ports
            raise ValueError(f"{item!r} is given twice")
        seen.add(spec)
    return tuple(items)


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return text

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


def _peers(value: Any) -> str:
    """A comma-separated list of IPs, CIDR networks or *."""
    if isinstance(value, (list, tuple)):  # TOML may give a list
        value = ",".join(str(item) for item in value)
    return TrustedPeers(_text(value)).text


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; CLI flag is --name-with-dashes
    default: Any
    parse: Callable[[Any], Any]
    help: str
    metavar: str | None = None
    flag: bool = False  # boolean: --name / --no-name
    many: bool = False  # repeatable on the command line; a list in TOML
    short: str | None = None  # a one-letter flag too (-w), where gunicorn and uvicorn have the same

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "CORRAL_" + self.name.upper()

    @property
    def choices(self) -> tuple[str, ...] | None:
        return getattr(self.parse, "choices", None)


def _health_path(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    if not text.startswith("/") or any(c in text for c in "?# \t") or not text.isascii():
        raise ValueError("must be a path starting with / (no query, no spaces)")
    return text


def _static_mounts(value: Any) -> tuple[str, ...]:
    """--static-path-mount, repeatable: URL_PREFIX=DIR (or DIR, at /static);
    the directories are checked at startup, after --chdir."""
    from .proto.static import MountError, parse_mount

    items = _list(value)
    for item in items:
        try:
            parse_mount(item)
        except MountError as exc:
            raise ValueError(str(exc)) from None
    return items


_static_mounts.many = True  # type: ignore[attr-defined]


def _access_log_format(value: str) -> str:
    from .io.access import check_format

    return check_format(str(value))


def _opt(name, default, parse, help, metavar=None, short=None):
    many = parse is _list or getattr(parse, "many", False)
    return Option(name, default, parse, help, metavar, flag=parse is _bool, many=many, short=short)


def _user(value: Any) -> str | None:
    """A user name or a numeric uid that exists here (checked at start, so a typo is one line)."""
    import pwd

    text = _optional_text(value if not isinstance(value, int) or isinstance(value, bool) else str(value))
    if text is None:
        return None
    try:
        if text.isdigit():
            pwd.getpwuid(int(text))
        else:
            pwd.getpwnam(text)
    except KeyError:
        if not text.isdigit():
            raise ValueError("no such user on this system") from None
        # a numeric uid without a passwd entry (containers): allowed, with --group
    return text


def _group(value: Any) -> str | None:
    import grp

    text = _optional_text(value if not isinstance(value, int) or isinstance(value, bool) else str(value))
    if text is None:
        return None
    if not text.isdigit():
        try:
            grp.getgrnam(text)
        except KeyError:
            raise ValueError("no such group on this system") from None
    return text


def _megabytes(value: Any) -> int:
    return _int_range(0)(value)


OPTIONS: tuple[Option, ...] = (
    # application
    _opt("app", None, _app_spec, "The application, as MODULE:ATTR.", "MODULE:ATTR"),
    _opt("factory", False, _bool, "Treat ATTR as a callable that returns the application (a function taking no arguments given without it is refused at start)."),
    _opt("preload", False, _bool, "Import the app in the master before forking the workers, so they share its memory copy-on-write (gc.freeze() before each fork); post_fork hooks then run after the import, lifespan still runs in each worker. The master cannot import changed code again, so HUP re-executes it as USR2 does (a new master pid; --pid follows)."),
    _opt("app_dir", ".", _text, "Directory added to sys.path before importing the app (must exist; taken from --chdir).", "DIR"),
    _opt("interface", "auto", _choice("auto", "asgi", "wsgi"), "Application interface.", "auto|asgi|wsgi"),
    _opt("lifespan", "auto", _choice("auto", "on", "off"), "ASGI lifespan: auto runs it if the app supports it.", "auto|on|off"),
    _opt("root_path", "", _text, "ASGI root_path, for apps mounted below a prefix.", "PATH"),
    # sockets
    Option("bind", (), _binds, "Listen here; repeatable, every worker serves every listener: HOST:PORT, [IPv6]:PORT, unix:PATH (mode: --uds-mode) or fd://N (an inherited socket). HOST alone means port 8000. With --bind, --host/--port are not used; --uds and --fd add a listener each.", "ADDRESS", many=True, short="-b"),
    _opt("host", "127.0.0.1", _text, "Bind to this address (when no --bind, --uds or --fd is given).", "HOST"),
    _opt("port", 8000, _int_range(0, 65535), "Bind to this TCP port (0 picks a free one).", "PORT"),
    _opt("uds", None, _optional_text, "Bind to a UNIX domain socket instead of TCP (same as --bind unix:PATH).", "PATH"),
    _opt("uds_mode", None, _mode, "File mode of the UNIX socket, in octal (e.g. 660).", "MODE"),
    _opt("fd", None, _optional_int(0), "Serve an inherited listening socket file descriptor (same as --bind fd://N).", "N"),
    _opt("backlog", 2048, _int_range(1), "Listen backlog (clamped to net.core.somaxconn).", "N"),
    # processes
    _opt("workers", 1, _workers, "Number of worker processes (auto = CPU count).", "N|auto", short="-w"),
    _opt("threads", 1, _int_range(1, 1024), "WSGI: threads per worker; 1 runs the app on the worker's event loop, one request at a time (see WSGI).", "N"),
    _opt("accept", "shared", _choice("shared", "reuseport"), "shared: one queue for all workers; reuseport: one SO_REUSEPORT socket per worker slot.", "shared|reuseport"),
    _opt("timeout_worker", 30.0, _seconds, "Kill and replace a worker whose loop is blocked this long (0 = off).", "SECONDS"),
    _opt("timeout_boot", 60.0, _seconds, "Kill a worker not ready this long after it started (app import and lifespan startup); counts as a failed boot (0 = off).", "SECONDS"),
    _opt("timeout_graceful", 30.0, _seconds, "Longest wait for in-flight work on shutdown and reload.", "SECONDS"),
    _opt("shutdown_delay", 0.0, _seconds, "On TERM, keep accepting and serving this long, every response with Connection: close and --health-path answering 503, before the graceful shutdown (for load balancers that still route after TERM; a second TERM skips it).", "SECONDS"),
    _opt("health_path", None, _health_path, "Answer this path with 200 (503 while stopping) without calling the app; for readiness probes and load balancer health checks.", "PATH"),
    _opt("static_path_mount", (), _static_mounts, "Serve the files of DIR at URL_PREFIX, before the app; repeatable. A bare DIR is mounted at /static (as Granian's); sendfile, also over TLS and HTTP/2; ETag and Last-Modified with 304, a single Range (206, 416), HEAD, precompressed .br/.gz siblings by Accept-Encoding (with Vary), MIME types; a path that leaves DIR, a directory, a hidden or non-regular file is a 404, a method other than GET/HEAD a 405.", "URL_PREFIX=DIR"),
    _opt("static_max_age", 86400, _int_range(0), "Cache-Control max-age of static files. In seconds, for --static-path-mount's files; 0 sends no-cache (revalidated by ETag each time).", "SECONDS"),
    _opt("limit_max_requests", 0, _int_range(0), "Recycle a worker after this many requests (0 = never).", "N"),
    _opt("max_requests_jitter", 0, _int_range(0), "Random extra requests added to --limit-max-requests per worker.", "N"),
    _opt("workers_max_rss", 0, _megabytes, "Recycle a worker (zero-loss, like HUP) whose resident memory is over this many MiB at a sample (once a second; 0 = off).", "MB"),
    _opt("workers_lifetime", 0.0, _seconds, "Recycle a worker (zero-loss, like HUP) this long after it started (0 = never).", "SECONDS"),
    _opt("workers_lifetime_jitter", 0.0, _seconds, "Random extra seconds added to --workers-lifetime per worker, so workers started together are not recycled together.", "SECONDS"),
    # operating the process
    _opt("pid", None, _optional_text, "Write the master's pid to FILE once the sockets are bound (atomically); a USR2 upgrade's new master rewrites it, the master removes it at exit; a stale file is replaced, a running master's refuses the start.", "FILE"),
    _opt("chdir", None, _optional_text, "Change to this directory before anything else: relative paths (the app, --app-dir, --pid, --uds, --env-file, --log-file, certificates) are taken from it.", "DIR"),
    _opt("env_file", None, _optional_text, "Load environment variables from this dotenv file (python-dotenv), again on each reload; variables already set win; CORRAL_* ones in it set options.", "PATH"),
    _opt("user", None, _user, "Run the master and the workers as this user (name or uid) once the sockets are bound as root; before any app code runs.", "USER"),
    _opt("group", None, _group, "Run as this group (name or gid; default: the --user's primary group).", "GROUP"),
    _opt("umask", None, _mode, "File mode creation mask of the master and the workers, in octal (e.g. 027; default: inherited).", "MASK"),
    # HTTP
    _opt("timeout_keep_alive", 5.0, _seconds, "Close an idle keep-alive connection after this long.", "SECONDS"),
    _opt("limit_request_line", 8192, _int_range(64), "Longest request line in bytes (414 beyond).", "BYTES"),
    _opt("limit_header_size", 65536, _int_range(256), "Largest request header block in bytes (431 beyond).", "BYTES"),
    _opt("timeout_header", 10.0, _seconds, "The whole request head must arrive within this time, else 408 (0 = off).", "SECONDS"),
    _opt("timeout_body", 30.0, _seconds, "Longest gap between request body chunks, else 408 (0 = off).", "SECONDS"),
    _opt("timeout_write", 30.0, _seconds, "Close a client that reads nothing of its response for this long, counted from its last progress (0 = off).", "SECONDS"),
    # overload
    _opt("limit_connections", 0, _int_range(0), "Per worker: stop accepting at this many open connections (0 = no limit).", "N"),
    _opt("limit_concurrency", 0, _int_range(0), "Per worker: requests in flight beyond this get 503 + Retry-After (0 = no limit).", "N"),
    _opt("limit_concurrency_queue", 0.0, _seconds, "Let requests over --limit-concurrency wait this long for a slot before the 503.", "SECONDS"),
    _opt("limit_queue_delay", 0.1, _seconds, "Overload control: while the worker's loop lags, a request that waited longer than this before corral could read it gets 503 + Retry-After, without the app (0 = off).", "SECONDS"),
    _opt("limit_request_body", 0, _int_range(0), "Largest request body in bytes, declared or chunked (413 beyond; 0 = no limit).", "BYTES"),
    _opt("server_header", True, _bool, "Send a Server header."),
    _opt("date_header", True, _bool, "Send a Date header."),
    # behind a proxy
    _opt("proxy_headers", True, _bool, "Take the client address and scheme from Forwarded / X-Forwarded-For / X-Forwarded-Proto sent by a trusted peer."),
    _opt("forwarded_allow_ips", "127.0.0.1,::1", _peers, "Peers trusted with forwarding headers: IPs, CIDR networks or * (also FORWARDED_ALLOW_IPS); UNIX socket peers always are.", "LIST"),
    _opt("forwarded_host", False, _bool, "Also take the Host from X-Forwarded-Host / Forwarded host= sent by a trusted peer."),
    _opt("proxy_protocol", "off", _choice("off", "v1", "v2", "auto"), "PROXY protocol header required from --proxy-allow-from peers (auto: v1, v2 or none); a header from another peer closes the connection.", "off|v1|v2|auto"),
    _opt("proxy_allow_from", "127.0.0.1,::1", _peers, "Peers allowed to send a PROXY protocol header: IPs, CIDR networks or *; UNIX socket peers always are.", "LIST"),
    # HTTP/2
    _opt("http", "auto", _choice("auto", "1", "2"), "Protocols served: auto (HTTP/1.1, and HTTP/2 by ALPN over TLS or by its preface in cleartext), 1 (HTTP/1.1 only), 2 (HTTP/2 only).", "auto|1|2"),
    _opt("h2_max_concurrent_streams", 100, _int_range(1, 2**31 - 1), "HTTP/2: streams a client may have open at once on one connection.", "N"),
    # TLS (names as in uvicorn)
    _opt("ssl_certfile", None, _optional_text, "Serve TLS with this certificate chain (PEM).", "PATH"),
    _opt("ssl_keyfile", None, _optional_text, "Private key of --ssl-certfile (PEM; defaults to the certfile itself).", "PATH"),
    _opt("ssl_keyfile_password", None, _optional_text, "Password of an encrypted --ssl-keyfile.", "PASSWORD"),
    _opt("ssl_ca_certs", None, _optional_text, "CA certificates (PEM) that client certificates are checked against (mTLS).", "PATH"),
    _opt("ssl_cert_reqs", "none", _choice("none", "optional", "required"), "Client certificates: none, optional (checked if sent) or required (mTLS).", "none|optional|required"),
    _opt("ssl_ciphers", "", _text, "OpenSSL cipher list for TLS 1.2 (empty = OpenSSL's defaults).", "CIPHERS"),
    _opt("ssl_min_version", "1.2", _choice("1.2", "1.3"), "Lowest TLS version accepted.", "1.2|1.3"),
    _opt("timeout_handshake", 10.0, _seconds, "Close a client that has not completed its TLS handshake in this time (0 = off).", "SECONDS"),
    # logging
    _opt("log_level", "info", _choice("critical", "error", "warning", "info", "debug"), "Log level.", "LEVEL"),
    _opt("log_file", None, _optional_text, "Write logs to this file (reopened on SIGUSR1) instead of stderr.", "PATH"),
    _opt("log_config", None, _optional_text, "A logging.config file applied over corral's defaults: JSON or YAML (dictConfig; YAML needs PyYAML) or INI (fileConfig). Loggers: corral.error, corral.access; access lines go through logging only when it gives corral.access handlers (see Logging).", "PATH"),
    _opt("access_log", True, _bool, "Log one line per request."),
    _opt("log_format", "text", _choice("text", "json"), "Format of corral's own log lines: text, or one JSON object per line (time, level, pid, event, message).", "text|json"),
    _opt("access_log_format", "default", _access_log_format, "Access log line: default, common, combined (Apache/nginx, plus the request time), json (one object per line), or a template of gunicorn atoms (see Access log).", "FORMAT"),
    # observing, development
    _opt("metrics_bind", None, _bind, "Serve Prometheus metrics from the master at http://HOST:PORT/metrics (off by default).", "HOST:PORT"),
    _opt("reload", False, _bool, "Development: restart the workers (zero-loss, like HUP) when a watched file changes."),
    _opt("reload_dir", (), _list, "Directory to watch with --reload; repeatable (default: the current directory).", "DIR"),
    _opt("reload_include", (), _list, "Glob of files to watch with --reload; repeatable (default: *.py).", "GLOB"),
    _opt("reload_exclude", (), _list, "Glob of files or directories to ignore with --reload; repeatable (default: .* .py[cod] .sw.* ~*).", "GLOB"),
    # WebSocket
    _opt("ws_max_size", 16 * 1024 * 1024, _int_range(1), "Largest WebSocket message in bytes; a bigger one closes the connection with 1009.", "BYTES"),
    _opt("ws_per_message_deflate", True, _bool, "Negotiate permessage-deflate compression with WebSocket clients that offer it."),
    _opt("ws_ping_interval", 20.0, _seconds, "Ping a WebSocket client silent for this long (0 = off).", "SECONDS"),
    _opt("ws_ping_timeout", 20.0, _seconds, "Close (1011) a WebSocket whose ping is unanswered for this long (0 = off).", "SECONDS"),
)

OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}

# Other servers' names for corral's options (docs/migrating.md), so a
# mistaken one is pointed at the right option, not the nearest spelling:
# gunicorn's --max-requests is --limit-max-requests, not --max-requests-jitter.
OTHER_NAMES = {
    # gunicorn
    "worker_class": "interface",
    "k": "interface",
    "worker_connections": "limit_connections",
    "max_requests": "limit_max_requests",
    "timeout": "timeout_worker",
    "t": "timeout_worker",
    "graceful_timeout": "timeout_graceful",
    "keep_alive": "timeout_keep_alive",
    "limit_request_field_size": "limit_header_size",
    "limit_request_fields": "limit_header_size",
    "reload_extra_file": "reload_include",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "ca_certs": "ssl_ca_certs",
    "cert_reqs": "ssl_cert_reqs",
    "ciphers": "ssl_ciphers",
    "access_logfile": "log_file",
    "error_logfile": "log_file",
    "access_logformat": "access_log_format",
    "statsd_host": "metrics_bind",
    # uvicorn
    "timeout_graceful_shutdown": "timeout_graceful",
    "timeout_worker_healthcheck": "timeout_worker",
    "ssl_version": "ssl_min_version",
    "h11_max_incomplete_event_size": "limit_header_size",
    # Granian
    "uds_permissions": "uds_mode",
    "blocking_threads": "threads",
    "backpressure": "limit_concurrency",
    "http1_keep_alive": "timeout_keep_alive",
    "http2_max_concurrent_streams": "h2_max_concurrent_streams",
    "ssl_certificate": "ssl_certfile",
    "ssl_ca": "ssl_ca_certs",
    "ssl_client_verify": "ssl_cert_reqs",
    "url_path_prefix": "root_path",
    "workers_kill_timeout": "timeout_graceful",
}


def closest_option(name: str, cutoff: float = 0.6) -> str | None:
    """The option a mistaken name most likely means (``name`` with
    underscores), or None: another server's name for it first, then the
    nearest spelling (difflib)."""
    import difflib

    name = name.lower().replace("-", "_")
    if name in OTHER_NAMES:
        return OTHER_NAMES[name]
    if name.startswith("no_") and name[3:] in OPTIONS_BY_NAME:
        return name[3:]
    matches = difflib.get_close_matches(name, list(OPTIONS_BY_NAME), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _did_you_mean(name: str, shown: Callable[[Option], str]) -> str:
    best = closest_option(name)
    if best is None:
        return ""
    option = OPTIONS_BY_NAME[best]
    return f" (did you mean {shown(option)}?)"


def unknown_option_line(arg: str) -> str:
    """The CLI's line for an unknown ``--name`` (or ``-x``)."""
    flag = arg.split("=", 1)[0]
    name = flag.lstrip("-")
    if flag.startswith("--no-") and closest_option(name[3:]) and OPTIONS_BY_NAME[closest_option(name[3:])].flag:
        return f"unknown option {flag}" + _did_you_mean(name[3:], lambda o: "--no-" + o.cli[2:])
    return f"unknown option {flag}" + _did_you_mean(name, lambda o: o.cli)


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """A ``CORRAL_*`` variable that is no option but close to one (a typo):
    one warning each. Others are left alone: apps use the prefix too."""
    known = {o.env for o in OPTIONS} | {"CORRAL_CONFIG", "CORRAL_PURE", "CORRAL_UPGRADE"}
    lines = []
    for key in environ:
        if not key.startswith("CORRAL_") or key in known:
            continue
        name = key[len("CORRAL_"):].lower()
        best = OTHER_NAMES.get(name) or closest_option(name, cutoff=0.8)
        if best is not None:
            lines.append(f"{key} is not an option (did you mean {OPTIONS_BY_NAME[best].env}?); ignored")
    return lines


# The groups ``corral --help`` and the docs' options reference
# (docs/configuration.md) show the options in: title -> option names, in the
# order shown. Every option is in exactly one (tests/test_cli_help.py): a new
# option goes here too.
GROUPS: dict[str, tuple[str, ...]] = {
    "Application": ("app", "factory", "preload", "app_dir", "interface", "lifespan", "root_path", "chdir", "env_file"),
    "Binding": ("bind", "host", "port", "uds", "uds_mode", "fd", "backlog", "accept"),
    "Workers and lifecycle": (
        "workers", "threads", "limit_max_requests", "max_requests_jitter", "workers_max_rss", "workers_lifetime",
        "workers_lifetime_jitter", "shutdown_delay", "pid", "user", "group", "umask",
    ),
    "Timeouts": (
        "timeout_keep_alive", "timeout_header", "timeout_body", "timeout_write", "timeout_handshake",
        "timeout_worker", "timeout_boot", "timeout_graceful",
    ),
    "Limits": (
        "limit_connections", "limit_concurrency", "limit_concurrency_queue", "limit_queue_delay", "limit_request_line",
        "limit_header_size", "limit_request_body",
    ),
    "Protocols": (
        "http", "h2_max_concurrent_streams", "ws_max_size", "ws_per_message_deflate", "ws_ping_interval",
        "ws_ping_timeout", "server_header", "date_header", "static_path_mount", "static_max_age",
    ),
    "TLS": (
        "ssl_certfile", "ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_cert_reqs", "ssl_ciphers",
        "ssl_min_version",
    ),
    "Proxies": ("proxy_headers", "forwarded_allow_ips", "forwarded_host", "proxy_protocol", "proxy_allow_from"),
    "Logging": ("log_level", "log_file", "log_config", "access_log", "log_format", "access_log_format"),
    "Metrics and health checks": ("metrics_bind", "health_path"),
    "Development": ("reload", "reload_dir", "reload_include", "reload_exclude"),
}


def grouped_options() -> list[tuple[str, list[Option]]]:
    """(group title, its options) in GROUPS' order; an option no group names
    comes last, under "Other" (the test of GROUPS fails until it has one)."""
    groups = [(title, [OPTIONS_BY_NAME[name] for name in names if name in OPTIONS_BY_NAME])
              for title, names in GROUPS.items()]
    named = {name for names in GROUPS.values() for name in names}
    other = [option for option in OPTIONS if option.name not in named]
    return groups + [("Other", other)] if other else groups


# Hooks a Python config file may define (as gunicorn's server hooks): where each runs.
HOOKS = {
    "on_starting": "master, before the sockets are bound; raising stops the start",
    "when_ready": "master, once every worker is ready for the first time",
    "post_fork": "each worker, after the fork, before the app is imported; raising fails its boot",
    "worker_exit": "each worker, after its shutdown (lifespan included), before it exits",
    "on_reload": "master, on HUP or --reload, before the new workers start",
    "on_exit": "master, just before it exits",
}


class Config:
    """Resolved settings: one attribute per entry of ``OPTIONS``, and ``hooks``
    (name -> callable, from a Python config file)."""

    def __init__(self, **values: Any) -> None:
        for option in OPTIONS:
            setattr(self, option.name, option.default)
        self.hooks: dict[str, Callable] = {}
        self.update(values, source="argument")

    def run_hook(self, name: str, *args: Any) -> BaseException | None:
        """Call hook ``name`` if the config file defines it. What it raises is
        logged with its traceback and returned (the caller decides whether the
        start fails); None when it ran or there is none."""
        hook = self.hooks.get(name)
        if hook is None:
            return None
        try:
            hook(*args)
        except Exception as exc:  # noqa: BLE001 - the operator's code: anything
            import logging

            logging.getLogger("corral.error").exception("%s hook raised %s: %s", name, type(exc).__name__, exc)
            return exc
        return None

    def update(self, values: Mapping[str, Any], source: str) -> None:
        for name, value in values.items():
            option = OPTIONS_BY_NAME.get(name)
            if option is None:
                raise ConfigError(f"{source}: unknown option {name!r}" + _did_you_mean(name, lambda o: repr(o.name)))
            try:
                setattr(self, name, option.parse(value))
            except ValueError as exc:
                raise ConfigError(f"{_describe(option, source)}: {exc} (got {value!r})") from None

    def __repr__(self) -> str:
        items = ", ".join(f"{o.name}={getattr(self, o.name)!r}" for o in OPTIONS)
        return f"Config({items})"

    @property
    def bind_description(self) -> str:
        if self.uds:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        return f"http://{self.host}:{self.port}"


def _describe(option: Option, source: str) -> str:
    if source == "cli":
        return "application" if option.name == "app" else option.cli
    if source == "env":
        return option.env
    if source == "FORWARDED_ALLOW_IPS":
        return source
    return f"{source}: {option.name}"


def load_python_file(path: str) -> tuple[dict[str, Any], dict[str, Callable]]:
    """A Python config file (``corral.conf.py``, as gunicorn's): options as module
    variables, hooks as functions (``HOOKS``). Names starting with ``_`` and
    imported modules are the file's own; any other name must be an option or a
    hook, so a misspelt one is an error, not silently ignored."""
    import __future__
    import difflib
    import runpy
    import types

    if not os.path.isfile(path):
        raise ConfigError(f"--config: cannot read {path}: No such file or directory")
    try:
        namespace = runpy.run_path(path, run_name="corral_config")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - SyntaxError, NameError, what the file raises
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise ConfigError(f"--config: {path} raised {type(exc).__name__}{where}: {exc}") from None
    values: dict[str, Any] = {}
    hooks: dict[str, Callable] = {}
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, __future__._Feature)):
            continue
        if name in HOOKS:
            if not callable(value):
                raise ConfigError(f"--config: {path}: hook {name} must be a function")
            hooks[name] = value
        elif name in OPTIONS_BY_NAME:
            values[name] = value
        else:
            best = closest_option(name)
            hint = difflib.get_close_matches(name, list(HOOKS), n=1)
            if hint:
                hint = f"did you mean hook {hint[0]!r}? "
            elif best is not None:
                hint = f"did you mean {best!r}? "
            else:
                hint = ""
            raise ConfigError(
                f"--config: {path}: unknown option or hook {name!r} ({hint}name the file's own helpers with a leading _)"
            )
    return values, hooks


def load_file(path: str) -> dict[str, Any]:
    """Read a TOML file; keys may use dashes or underscores, optionally under [corral]."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
    data = data.get("corral", data)
    return {key.replace("-", "_"): value for key, value in data.items()}


def from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {o.name: environ[o.env] for o in OPTIONS if o.env in environ}


def env_file_path(path: str, chdir: str | None) -> str:
    """--env-file is taken from --chdir when relative (read before the change)."""
    return path if os.path.isabs(path) or not chdir else os.path.join(chdir, path)


def read_env_file(path: str) -> dict[str, str]:
    """The variables of a dotenv file (python-dotenv's format: quotes, ``export``,
    ``${VAR}`` expansion, multi-line values); a line it cannot parse is an error."""
    try:
        from dotenv import dotenv_values
        from dotenv.parser import parse_stream
    except ImportError:
        raise ConfigError("--env-file needs python-dotenv: pip install 'corral[dotenv]' (or python-dotenv)") from None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"--env-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--env-file: {path} is not UTF-8 text") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            shown = binding.original.string.strip()[:60]
            raise ConfigError(f"--env-file {path}: line {binding.original.line} is not KEY=VALUE: {shown!r}")
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {key: value for key, value in values.items() if value is not None}  # a bare KEY sets nothing


def resolve(cli: Mapping[str, Any], environ: Mapping[str, str], config_file: str | None) -> Config:
    """Merge the sources in precedence order: CLI > env > --env-file > file > defaults."""
    config_file = config_file or environ.get("CORRAL_CONFIG")
    hooks: dict[str, Callable] = {}
    if config_file and config_file.endswith(".py"):
        file_values, hooks = load_python_file(config_file)
    else:
        file_values = load_file(config_file) if config_file else {}

    def build(dotenv: Mapping[str, str], dotenv_path: str = "") -> Config:
        config = Config()
        if config_file:
            config.update(file_values, source=config_file)
        # CORRAL_* variables of --env-file, under the real environment's
        config.update({k: v for k, v in from_env(dotenv).items() if k != "env_file"}, source=f"--env-file {dotenv_path}")
        if "FORWARDED_ALLOW_IPS" in environ:  # as uvicorn and gunicorn read it; CORRAL_FORWARDED_ALLOW_IPS wins
            config.update({"forwarded_allow_ips": environ["FORWARDED_ALLOW_IPS"]}, source="FORWARDED_ALLOW_IPS")
        config.update(from_env(environ), source="env")
        config.update(cli, source="cli")
        config.hooks = dict(hooks)
        return config

    config = build({})
    if config.env_file:
        path = env_file_path(config.env_file, config.chdir)
        config = build(read_env_file(path), path)
    if not config.app:
        raise ConfigError("no application given: pass MODULE:ATTR (or set CORRAL_APP or app in the config file)")
    return config


def options_markdown(options: tuple[Option, ...] | list[Option] = OPTIONS) -> str:
    """The options reference of the docs site, generated from OPTIONS at build
    time (docs/hooks.py: one table per group of GROUPS)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for option in options:
        if option.name == "app":
            continue
        if option.flag:
            flag = f"`{option.cli}` / `--no-{option.cli[2:]}`"
        else:
            flag = f"`{option.cli} {option.metavar}`"
        if option.short:
            flag = f"`{option.short}`, {flag}"
        default = option.default
        if isinstance(default, bool):
            shown = "on" if default else "off"
        elif default is None or default == () or default == "":
            shown = "-"
        else:
            shown = f"`{default}`"
        rows.append("| " + " | ".join(cell(c) for c in (flag, f"`{option.env}`", shown, option.help)) + " |")
    return "\n".join(rows) + "\n"
