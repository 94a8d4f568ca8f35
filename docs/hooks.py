"""mkdocs hook: the docs site shows the README's front-page sections (the
README is the repository's front page; the topic text lives in docs/*.md),
the package READMEs and the generated options reference, not copies of them.

A page holds directives on lines of their own, replaced at build time:

* ``<!-- readme: TITLE -->``: the README section whose heading is TITLE,
  with its subsections, down to the next heading of its level or above.
* ``<!-- readme-intro: TITLE -->``: the same section up to its first
  subsection.
* ``<!-- include: PATH -->``: a Markdown file of the repository (a package
  README, the CHANGELOG), its headings moved one level down.
* ``<!-- options-table -->``: the options reference, generated from
  ``corral/config.py`` (``corral --help`` is generated from it too): a
  ``###`` heading per group of ``GROUPS`` (the groups of ``corral --help``),
  each with its options' table, the help texts in full.
* ``<!-- check-corral-options -->``: every ``--option`` in the second column
  of the page's tables (the migration guide's "corral" column) must be one
  of corral's (``corral/config.py``), or the build fails.

Headings inside fenced code blocks are not headings. A directive naming a
heading the README no longer has, and a README ``##`` section that no page
includes, are errors, so ``mkdocs build --strict`` (``make docs``, run by
``make test``) fails when the README and the site drift apart.

Links in included text that point at repository files outside the site
become code spans (``deploy/haproxy.cfg``); links to ``docs/`` files (the
screenshot) are made relative to the site.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.hooks.readme")
DIRECTIVE = re.compile(r"^<!-- (readme|readme-intro|include): (.+?) -->$|^<!-- options-table -->$", re.M)
CHECK_OPTIONS = "<!-- check-corral-options -->"
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_used: set[str] = set()


def _lines_outside_fences(text: str):
    """(index, line, is_code) for each line."""
    fence = None
    for index, line in enumerate(text.split("\n")):
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            yield index, line, True
        elif fence is not None:
            if stripped.startswith(fence):
                fence = None
            yield index, line, True
        else:
            yield index, line, False


def sections(text: str) -> dict[str, tuple[int, int, int, int]]:
    """heading title -> (level, first line, first subsection line, end line)."""
    lines = text.split("\n")
    heads = [(i, len(m.group(1)), m.group(2)) for i, line, code in _lines_outside_fences(text)
             if not code and (m := HEADING.match(line))]
    found = {}
    for n, (start, level, title) in enumerate(heads):
        end = next((i for i, lv, _ in heads[n + 1:] if lv <= level), len(lines))
        intro = next((i for i, lv, _ in heads[n + 1:] if lv > level and i < end), end)
        found.setdefault(title, (level, start, intro, end))
    return found


def _relink(text: str) -> str:
    def fix(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        if target.startswith("docs/"):
            return f"{bang}[{label}]({target[len('docs/'):]})"
        bare = label.strip("`")
        if target.startswith(bare.rstrip("/")):  # [`deploy/`](deploy/README.md): the path says it
            return f"`{target}`"
        return f"{label} (`{target}`)"

    out = []
    for _, line, code in _lines_outside_fences(text):
        out.append(line if code else LINK.sub(fix, line))
    return "\n".join(out)


def _shift(text: str, by: int) -> str:
    out = []
    for _, line, code in _lines_outside_fences(text):
        match = None if code else HEADING.match(line)
        out.append(f"{'#' * min(6, len(match.group(1)) + by)} {match.group(2)}" if match else line)
    return "\n".join(out)


def _readme_section(title: str, intro_only: bool, page: str) -> str:
    readme = (ROOT / "README.md").read_text()
    found = sections(readme)
    if title not in found:
        raise PluginError(f"{page}: the README has no heading {title!r} (renamed? update the page)")
    level, start, intro, end = found[title]
    _used.add(title)
    if not intro_only:  # its subsections are included with it
        _used.update(t for t, (lv, s, _, _) in found.items() if start < s < end)
    lines = readme.split("\n")[start:intro if intro_only else end]
    return _relink("\n".join(lines).rstrip() + "\n")


def _config():
    sys.path.insert(0, str(ROOT))
    try:
        from corral import config
    finally:
        sys.path.remove(str(ROOT))
    return config


_CONFIG_ROW = ("| `-c`, `--config FILE` | `CORRAL_CONFIG` | - | A TOML file of options (keys as in `--help`, "
               "a `[corral]` table optional), or a Python file (`.py`) of options and hooks. |")


def _options_table() -> str:
    config = _config()
    parts = []
    for title, options in config.grouped_options():
        table = config.options_markdown([option for option in options if option.name != "app"])
        if any(option.name == "app" for option in options):  # the file itself: not an option of the file
            header, rule, rest = table.split("\n", 2)
            table = "\n".join((header, rule, _CONFIG_ROW, rest))
        parts.append(f"### {title}\n\n{table}")
    return "\n".join(parts)


def _check_options(markdown: str, page: str) -> None:
    """The second column of each table row names only corral's options."""
    known = {"--config", "--version", "--help"}
    for option in _config().OPTIONS:
        known.add(option.cli)
        if option.flag:
            known.add("--no-" + option.cli[2:])
    unknown = []
    for _, line, code in _lines_outside_fences(markdown):
        if code or not line.startswith("|") or re.fullmatch(r"[|\s:-]+", line):
            continue
        cells = re.split(r"(?<!\\)\|", line)
        if len(cells) > 2:
            unknown += [name for name in re.findall(r"--[a-z][a-z0-9-]*", cells[2]) if name not in known]
    if unknown:
        raise PluginError(f"{page}: corral has no option {', '.join(sorted(set(unknown)))} (corral/config.py)")


def on_pre_build(config):
    _used.clear()


def on_page_markdown(markdown: str, page, config, files):
    if CHECK_OPTIONS in markdown:
        _check_options(markdown, page.file.src_path)
        markdown = markdown.replace(CHECK_OPTIONS, "")

    def replace(match: re.Match) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind is None:
            return _options_table()
        if kind == "include":
            path = ROOT / argument
            if not path.is_file():
                raise PluginError(f"{page.file.src_path}: no file {argument}")
            return _relink(_shift(path.read_text(), 1))
        return _readme_section(argument, kind == "readme-intro", page.file.src_path)

    return DIRECTIVE.sub(replace, markdown)


def on_post_build(config):
    readme = (ROOT / "README.md").read_text()
    missing = [title for title, (level, *_) in sections(readme).items() if level == 2 and title not in _used]
    for title in missing:
        log.warning("the README section %r is on no page of the docs site (docs/*.md: <!-- readme: ... -->)", title)


def on_page_content(html: str, page, config, files):
    """A pipe in a table cell's code is written ``\\|`` in Markdown (GitHub
    renders it as ``|``); Python-Markdown keeps the backslash in code spans."""
    return re.sub(r"<td>.*?</td>", lambda m: m.group(0).replace("\\|", "|"), html, flags=re.S)
