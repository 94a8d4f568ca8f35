"""Command line: ``corral MODULE:ATTR [options]``; every option is in config.OPTIONS."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .config import OPTIONS, ConfigError, resolve, unknown_env_warnings, unknown_option_line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"corral: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="corral",
        allow_abbrev=False,  # gunicorn's --max-requests must not be taken as --max-requests-jitter
        description="Serve an ASGI or WSGI application.",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every option can also be set as CORRAL_<OPTION> in the environment "
        "or in the TOML file given with --config. Precedence: CLI > env > file > defaults (CORRAL_* from --env-file: below env, above the file).",
    )
    parser.add_argument("app", nargs="?", metavar="MODULE:ATTR", help="The application, e.g. myproject.asgi:app.")
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML file with options (keys as in --help, [corral] table optional), or a Python file (.py) with options and hooks.")
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    for option in OPTIONS:
        if option.name == "app":
            continue
        default = f" (default: {_show(option.default)})"
        flags = [option.short, option.cli] if option.short else [option.cli]
        if option.flag:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, help=option.help + default)
        elif option.many:
            parser.add_argument(*flags, action="append", metavar=option.metavar, help=option.help + default)
        else:
            parser.add_argument(*flags, metavar=option.metavar, help=option.help + default)
    return parser


def _show(value) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
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
