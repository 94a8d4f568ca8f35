"""The README stays true: its options table is the one config.py generates."""

import re
from pathlib import Path

from corral.config import OPTIONS, options_markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_options_table_matches_config():
    table = re.search(r"<!-- options:start[^\n]*-->\n(.*?)<!-- options:end -->", README, re.S).group(1)
    assert table == options_markdown(), "run `make options-table`"


def test_readme_starts_with_make_run_and_make_test():
    quick_start = README.split("## Quick start", 1)[1]
    assert quick_start.index("make run") < quick_start.index("make test")


def test_every_option_is_documented_once():
    for option in OPTIONS:
        if option.name != "app":
            assert README.count(f"`{option.env}`") == 1, option.env
