"""The documentation cannot drift from the code: every setting and flag is documented, every link resolves.

- Every environment variable of `schemas/settings.py` has a row in docs/operations.md's configuration
  table, and that row shows the variable's default as the code has it.
- Every flag of every `chat-analytics` command appears in that command's section of docs/operations.md.
- Every relative link of README.md, docs/**/*.md and bench/README.md names a file that exists, and a
  `#fragment` names a heading of the page it points to (GitHub's anchors).
- Nothing points a reader outside the repository at a contract it does not carry.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import schemas.settings as settings
from cli.main import build_parser
from tests.support import REPO

OPERATIONS = REPO / "docs" / "operations.md"
PAGES = sorted([REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(path: Path) -> Iterator[str]:
    """The lines of a Markdown page outside fenced code blocks (where `#` is a shell comment)."""
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in _prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def _environment_variables() -> dict[str, str]:
    return {name: value for name, value in vars(settings).items() if name.startswith("ENV_")}


def _shown(default: object) -> str:
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def _configuration_rows() -> dict[str, str]:
    rows = {}
    for line in _prose_lines(OPERATIONS):
        match = re.match(r"\|\s*`(CHAT_ANALYTICS_[A-Z_]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


@pytest.mark.parametrize("constant", sorted(_environment_variables()))
def test_every_setting_is_documented_with_its_default(constant: str) -> None:
    variable = _environment_variables()[constant]
    rows = _configuration_rows()
    assert variable in rows, f"{variable} ({constant}) has no row in the configuration table of {OPERATIONS.name}"
    default_name = "DEFAULT_" + constant.removeprefix("ENV_")
    if hasattr(settings, default_name):
        shown = _shown(getattr(settings, default_name))
        assert f"`{shown}`" in rows[variable], f"the row of {variable} does not show its default `{shown}`"


def _commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(top-level command, parser) for every command and sub-command of `chat-analytics`."""

    def walk(parser: argparse.ArgumentParser, top: str | None) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield (top or name), sub
                    yield from walk(sub, top or name)

    yield from walk(build_parser(), None)


def _flags() -> list[tuple[str, str]]:
    found = set()
    for command, parser in _commands():
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    found.add((command, option))
    return sorted(found)


def _command_sections() -> dict[str, str]:
    """The text under each `### \\`chat-analytics COMMAND\\`` heading of docs/operations.md."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _prose_lines(OPERATIONS):
        match = HEADING.match(line)
        if match:
            command = re.fullmatch(r"`chat-analytics ([a-z-]+)`", match.group(2))
            current = sections.setdefault(command.group(1), []) if command else None
        elif current is not None:
            current.append(line)
    return {command: "\n".join(lines) for command, lines in sections.items()}


@pytest.mark.parametrize(("command", "flag"), _flags())
def test_every_flag_is_documented_under_its_command(command: str, flag: str) -> None:
    sections = _command_sections()
    assert command in sections, f"{OPERATIONS.name} has no section `chat-analytics {command}`"
    assert re.search(rf"`{re.escape(flag)}\b", sections[command]), (
        f"`chat-analytics {command} {flag}` is not in its section of {OPERATIONS.name}"
    )


def _links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for line in _prose_lines(page):
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...: not ours to check
                    found.append((page, target))
    return found


@pytest.mark.parametrize(
    ("page", "target"), _links(), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else v
)
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path, _, fragment = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
    if fragment and resolved.suffix == ".md":
        assert fragment in anchors(resolved), f"{page.relative_to(REPO)} links to {target}: no such heading"


def test_the_pages_are_found() -> None:
    # Guards the tests above against passing vacuously.
    assert {"README.md", "operations.md", "api.md", "events.md", "architecture.md"} <= {p.name for p in PAGES}
    assert len(_links()) > 50 and len(_flags()) > 50 and len(_environment_variables()) > 15


def test_the_readme_is_a_front_door() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    for command in ("make demo", "make test"):
        assert command in readme


def test_nothing_points_outside_the_repository() -> None:
    # Spelled in pieces, so that this file does not find itself.
    outside = ("../" + "shared", "/work/" + "shared")
    skip = {".git", ".venv", ".cache", "data", "build", "dist", "node_modules", "__pycache__", ".hypothesis"}
    offenders = []
    for path in REPO.rglob("*"):
        if any(part in skip or part.endswith(".egg-info") for part in path.relative_to(REPO).parts):
            continue
        if path.is_file() and path.suffix in {".md", ".py", ".toml", ".yml", ".yaml", ".cfg", ".txt", ""}:
            text = path.read_text(encoding="utf-8", errors="replace")
            if any(place in text for place in outside):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
