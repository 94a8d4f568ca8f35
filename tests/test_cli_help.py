"""corral --help: every option in exactly one group (config.GROUPS), one line
per option where it fits, each default printed once, under 120 lines at 80
columns, corral top and the full reference named."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

from corral.cli import SHORT_HELP, build_parser, short_help
from corral.config import GROUPS, OPTIONS, OPTIONS_BY_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def help_text(columns: int = 80) -> str:
    """The real command's --help, as a terminal of this width shows it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(COLUMNS=str(columns), LINES="50")
    result = subprocess.run([sys.executable, "-m", "corral", "--help"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=30)
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout


def entries(text: str) -> dict[str, str]:
    """Flag (as written at the start of an entry) -> its help, joined onto one line."""
    found: dict[str, str] = {}
    current = None
    for line in text.split("\n"):
        if line.startswith("  ") and not line.startswith("   "):  # an entry: flags, then maybe its help
            flags, _, rest = line[2:].partition("  ")
            current = flags.strip()
            found[current] = rest.strip()
        elif line.startswith("   ") and current is not None:  # its help, continued
            found[current] = (found[current] + " " + line.strip()).strip()
        else:
            current = None
    return found


def test_every_option_is_in_exactly_one_group():
    counts = collections.Counter(name for names in GROUPS.values() for name in names)
    twice = sorted(name for name, n in counts.items() if n > 1)
    assert not twice, f"in more than one group of corral/config.py GROUPS: {', '.join(twice)}"
    missing = [option.name for option in OPTIONS if option.name not in counts]
    assert not missing, f"no group in corral/config.py GROUPS (add each to one): {', '.join(missing)}"
    unknown = sorted(set(counts) - set(OPTIONS_BY_NAME))
    assert not unknown, f"GROUPS names options that config.OPTIONS does not have: {', '.join(unknown)}"
    assert not set(SHORT_HELP) - set(OPTIONS_BY_NAME), "corral/cli.py SHORT_HELP names an option that is gone"


def test_the_groups_are_the_issues_eleven_in_order():
    assert list(GROUPS) == ["Application", "Binding", "Workers and lifecycle", "Timeouts", "Limits", "Protocols",
                            "TLS", "Proxies", "Logging", "Metrics and health checks", "Development"]


def test_help_is_grouped_short_and_fits_80_columns():
    text = help_text(80)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) < 120, f"corral --help is {len(lines)} lines at 80 columns (shorten a help in cli.py SHORT_HELP)"
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    headings = [line[:-1] for line in lines if re.fullmatch(r"[A-Z][A-Za-z /]+:", line)]
    assert headings == list(GROUPS)  # no "options:" or "positional arguments:" section outside them
    assert lines[0] == "usage: corral MODULE:ATTR [options]"
    assert lines[1].split() [:3] == ["corral", "top", "[URL]"]
    assert "corral top: the live view of a running corral (corral top --help)." in text
    assert "In full: docs/configuration.md." in text


def test_each_option_is_under_its_group_with_its_default_once():
    text = help_text(80)
    found = entries(text)
    sections = re.split(r"\n\n", text)
    by_heading = {section.split("\n", 1)[0][:-1]: section for section in sections if section.split("\n", 1)[0][:-1] in GROUPS}
    for title, names in GROUPS.items():
        for name in names:
            option = OPTIONS_BY_NAME[name]
            if name == "app":
                assert "MODULE:ATTR" in found and found["MODULE:ATTR"].startswith("The application")
                continue
            flag = ("--[no-]" + option.cli[2:]) if option.flag else f"{option.cli} {option.metavar}"
            if option.short:
                flag = f"{option.short}, {flag}"
            assert flag in found, f"{flag} not in --help"
            assert re.search(rf"^  {re.escape(flag)}( |$)", by_heading[title], re.M), f"{flag} not under {title}"
            line = found[flag]
            assert line == " ".join(short_help(option).split()), name
            # a default once: one [..] at the end or a "(default: ...)" in the text, never both, never empty
            marks = line.count("(default:") + (1 if line.endswith("]") else 0)
            assert marks <= 1, f"{flag}: default printed twice: {line}"
            assert "[]" not in line and "(default: )" not in line and "default: none" not in line, line
            if option.flag:
                assert line.endswith("[on]" if option.default else "[off]"), line
            elif option.default not in (None, "", ()):
                assert line.endswith("]"), f"{flag}: its default is not shown: {line}"


def test_the_defaults_that_used_to_print_twice():
    text = " ".join(help_text(80).split())
    assert "(default: none)" not in text and "(default: )" not in text
    assert "--reload-dir DIR Directory to watch; repeatable. [.]" in text
    assert "--root-path PATH ASGI root_path: the app's URL prefix. --chdir" in text  # no "(default: )"
    assert "--port PORT TCP port (0: a free one). [8000]" in text
    assert "--timeout-keep-alive SECONDS Close an idle keep-alive connection. [5]" in text  # 5, not 5.0


def test_a_long_help_shows_its_first_sentence():
    from corral.config import Option, _text

    option = Option("example", "x", _text, "First sentence here. Then a second, longer one.", "X")
    assert short_help(option) == "First sentence here. [x]"


def test_help_still_parses_what_it_shows():
    parser = build_parser()
    args = vars(parser.parse_args(["m:a", "--no-access-log", "--factory", "-w", "2", "-c", "f.toml", "--reload-dir", "a"]))
    assert args == {"app": "m:a", "access_log": False, "factory": True, "workers": "2", "config": "f.toml",
                    "reload_dir": ["a"]}


def test_narrow_and_wide_terminals():
    for columns in (60, 200):
        text = help_text(columns)
        assert all(len(line) <= columns for line in text.split("\n")), columns
        assert "--[no-]access-log" in text and "Development:" in text


def test_the_docs_reference_has_the_same_groups_as_headings():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    try:
        import hooks
    finally:
        sys.path.remove(os.path.join(ROOT, "docs"))
    reference = hooks._options_table()
    assert re.findall(r"^### (.+)$", reference, re.M) == list(GROUPS)
    for title, names in GROUPS.items():
        section = reference.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]
        for name in names:
            if name != "app":
                assert section.count(f"`{OPTIONS_BY_NAME[name].env}`") == 1, (title, name)
    assert "`--config FILE` | `CORRAL_CONFIG`" in reference.split("### Binding", 1)[0]
    assert "| `` |" not in reference  # an empty default is "-"
