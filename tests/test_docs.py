"""The README is a front page that stays true: the two set-up commands first,
short, every link to a file that exists; the options reference is generated
from config.py at docs build time (docs/hooks.py), so it cannot drift."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_make_run_and_make_test():
    quick_start = README.split("## Quick start", 1)[1]
    assert quick_start.index("make run") < quick_start.index("make test")
    assert README.index("## Quick start") < README.index("\n## ", README.index("## Quick start") + 1)


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 200, "the README is the front page; topic text belongs in docs/"


def test_readme_links_name_files_that_exist():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README):
        if not re.match(r"[a-z]+:", target):
            assert (ROOT / target).exists(), target


def test_every_option_is_in_the_generated_reference():
    from corral.config import OPTIONS, options_markdown

    table = options_markdown()
    for option in OPTIONS:
        if option.name != "app":
            assert table.count(f"`{option.env}`") == 1, option.env
    assert "<!-- options-table -->" in (ROOT / "docs/configuration.md").read_text()
