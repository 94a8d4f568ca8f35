"""Command line: ``corral MODULE:ATTR [options]``; every option is in config.OPTIONS."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from . import __version__
from .config import ConfigError, grouped_options, resolve, unknown_env_warnings, unknown_option_line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"corral: error: {message}\n")


USAGE = """corral MODULE:ATTR [options]
       corral top [URL] [--interval SECONDS] [--svg FILE]"""

EPILOG = """\
corral top: the live view of a running corral (corral top --help).
Also CORRAL_<OPTION>, or a --config key. In full: docs/configuration.md."""

# --help's one-line forms of the options whose help in config.py is longer
# than a line (the docs' reference has the whole text); any other option shows
# its first sentence. tests/test_cli_help.py keeps --help under 120 lines.
SHORT_HELP = {
    "static_path_mount": "Serve DIR's files at URL_PREFIX; repeatable.",
    "factory": "ATTR is a callable returning the app.",
    "preload": "Import the app in the master first.",
    "app_dir": "Put on sys.path before the import.",
    "lifespan": "ASGI lifespan (auto: if supported).",
    "root_path": "ASGI root_path: the app's URL prefix.",
    "chdir": "Change to DIR first; paths are from it.",
    "env_file": "Load environment variables from a dotenv file.",
    "bind": "Listen: HOST:PORT, unix:PATH, fd://N; repeat.",
    "host": "Address to bind when no --bind.",
    "port": "TCP port (0: a free one).",
    "uds": "Bind to a UNIX socket instead of TCP.",
    "uds_mode": "File mode of the UNIX socket (octal: 660).",
    "fd": "Serve an inherited listening socket.",
    "backlog": "Listen backlog (up to somaxconn).",
    "accept": "One queue, or a socket per worker.",
    "workers": "Worker processes (auto: one per CPU).",
    "threads": "WSGI threads per worker (1: on the loop).",
    "limit_max_requests": "Recycle a worker after N requests.",
    "max_requests_jitter": "Up to N more, at random, per worker.",
    "workers_max_rss": "Recycle a worker over this RSS in MiB.",
    "workers_lifetime": "Recycle a worker after this long.",
    "workers_lifetime_jitter": "Up to this much longer, at random.",
    "shutdown_delay": "On TERM, keep serving this long first.",
    "pid": "Write the master's pid to FILE.",
    "user": "Run as this user once the sockets are bound.",
    "group": "Run as this group. [the user's group]",
    "umask": "File mode creation mask, octal. [inherited]",
    "timeout_keep_alive": "Close an idle keep-alive connection.",
    "timeout_header": "408 if the request head takes longer.",
    "timeout_body": "408 on a longer gap in a request body.",
    "timeout_write": "Close a client that reads nothing.",
    "timeout_handshake": "Close a client still in TLS handshake.",
    "timeout_worker": "Replace a worker blocked this long.",
    "timeout_boot": "Kill a worker not ready this long.",
    "timeout_graceful": "Longest wait for in-flight work.",
    "limit_connections": "Per worker: accept up to N connections.",
    "limit_concurrency": "Per worker: 503 beyond N in flight.",
    "limit_concurrency_queue": "Wait this long for a slot before that 503.",
    "limit_queue_delay": "Overload: 503 to requests that waited longer (0 = off).",
    "limit_request_line": "Longest request line (414).",
    "limit_header_size": "Largest request head (431).",
    "limit_request_body": "Largest request body (413).",
    "http": "auto: HTTP/1.1 and HTTP/2; 1, 2: only.",
    "h2_max_concurrent_streams": "HTTP/2 streams per connection at once.",
    "ws_max_size": "Largest WebSocket message (1009).",
    "ws_per_message_deflate": "WebSocket permessage-deflate compression.",
    "ws_ping_interval": "Ping a silent WebSocket client.",
    "ws_ping_timeout": "Close (1011) when a ping is unanswered.",
    "ssl_certfile": "Serve TLS with this certificate chain (PEM).",
    "ssl_keyfile": "Its private key (PEM). [the certfile]",
    "ssl_keyfile_password": "Password of an encrypted key.",
    "ssl_ca_certs": "CAs to check client certificates against.",
    "ssl_cert_reqs": "Client certificates (required: mTLS).",
    "ssl_ciphers": "OpenSSL cipher list for TLS 1.2.",
    "ssl_min_version": "Lowest TLS version accepted.",
    "proxy_headers": "Client address, scheme from a proxy.",
    "forwarded_allow_ips": "Which proxies are trusted.",
    "forwarded_host": "Also the Host from a trusted proxy.",
    "proxy_protocol": "PROXY protocol from allowed peers.",
    "proxy_allow_from": "Peers that may send one.",
    "log_file": "Write logs to FILE (reopened on USR1).",
    "log_config": "logging.config file: JSON, YAML or INI.",
    "log_format": "corral's own lines: text or JSON.",
    "access_log_format": "Access log line: preset or template.",
    "metrics_bind": "Serve Prometheus metrics at HOST:PORT/metrics.",
    "health_path": "Answer 200 here (503 when stopping), no app.",
    "reload": "Restart the workers on file changes.",
    "reload_dir": "Directory to watch; repeatable. [.]",
    "reload_include": "Glob of files to watch; repeatable. [*.py]",
    "reload_exclude": "Glob to ignore. [.* .py[cod] .sw.* ~*]",
}


class _HelpFormatter(argparse.HelpFormatter):
    """One line per option where it fits: ``--[no-]flag`` for a boolean, the
    metavar once (``-w, --workers N|auto``), the help from column 32; the
    description's and epilog's lines are wrapped one by one."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                         for line in text.splitlines())

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):
            return ", ".join(s.replace("--", "--[no-]", 1) for s in action.option_strings if not s.startswith("--no-"))
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(action.option_strings) + " " + metavar


def short_help(option) -> str:
    """--help's line for an option: its short form, or its help's first
    sentence, then its default in brackets (as gunicorn's) where it has one
    and the text names none."""
    text = SHORT_HELP.get(option.name)
    if text is None:
        text = option.help.split(". ", 1)[0].rstrip(".") + "."
    shown = _show(option.default)
    if shown and not text.endswith("]"):  # a text may name its default, as [the user's group]
        text = f"{text} [{shown}]"
    return text.replace("%", "%%")  # argparse formats help with %


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="corral",
        allow_abbrev=False,  # gunicorn's --max-requests must not be taken as --max-requests-jitter
        usage=USAGE,
        description="Serve an ASGI or WSGI application (Linux only). Defaults in [brackets].",
        add_help=False,
        argument_default=argparse.SUPPRESS,
        formatter_class=_HelpFormatter,
        epilog=EPILOG,
    )
    for title, options in grouped_options():
        group = parser.add_argument_group(title)
        for option in options:
            if option.name == "app":  # the application group starts with the app, the config file, -h
                group.add_argument("app", nargs="?", metavar="MODULE:ATTR", help="The application, e.g. myproject.asgi:app.")
                group.add_argument("-c", "--config", metavar="FILE", help="TOML or Python file of options, hooks.")
                group.add_argument("-h", "--help", action="help", help="Show this help and exit.")
                group.add_argument("--version", action="version", version=f"corral {__version__}", help="Show the version and exit.")
                continue
            flags = [option.short, option.cli] if option.short else [option.cli]
            if option.flag:
                group.add_argument(*flags, action=argparse.BooleanOptionalAction, help=short_help(option))
            elif option.many:
                group.add_argument(*flags, action="append", metavar=option.metavar, help=short_help(option))
            else:
                group.add_argument(*flags, metavar=option.metavar, help=short_help(option))
    return parser


def _show(value) -> str:
    """A default as --help shows it; empty for none (nothing is printed)."""
    if value is None or value == () or value == "":
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def platform_error() -> str | None:
    """corral serves on Linux only (it relies on epoll's exclusive wake-ups,
    SO_REUSEPORT balancing, /proc and TCP_INFO): elsewhere, the one line it
    exits with, before the options are resolved (``--help`` and ``--version`` still
    answer)."""
    if sys.platform.startswith("linux"):
        return None
    return f"corral runs on Linux only; this is {sys.platform}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["top"]:  # corral top: the live view (corral/top)
        from .top import main as top

        return top(argv[1:])
    parser = build_parser()
    namespace, extra = parser.parse_known_args(argv)  # --help and --version answer on any platform
    if extra:
        unknown = next((arg for arg in extra if arg.startswith("-") and arg != "-"), None)
        parser.error(unknown_option_line(unknown) if unknown else "unrecognized arguments: " + " ".join(extra))
    args = vars(namespace)
    for line in unknown_env_warnings(os.environ):
        print(f"corral: warning: {line}", file=sys.stderr)
    error = platform_error()
    if error:
        print(f"corral: error: {error}", file=sys.stderr)
        return 2
    config_file = args.pop("config", None)
    try:
        config = resolve(args, os.environ, config_file)
    except ConfigError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 2
    from .supervisor import serve  # sets up logging once --chdir is done (a relative --log-file is taken from it)

    return serve(config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
