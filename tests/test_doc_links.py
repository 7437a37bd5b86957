"""The documentation's links hold: README.md and docs/*.md link to files and headings that exist, the
project paths they name in backticks exist, and every docs/*.md that any project file names exists.

Links, images and code spans are read with markdown-it (rich's Markdown parser), so a link inside a
code block or a code span is text, as GitHub shows it. Anchors follow GitHub's slugs: lowercase,
every character but letters, digits, spaces, hyphens and underscores dropped, spaces made hyphens,
and a repeated heading suffixed -1, -2, ...
"""
from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.conftest import ROOT

DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# A project path: a top folder of the repository (core/ too, which is gone: naming it is stale).
PROJECT_PATH = re.compile(
    r"(?<![\w./-])(?:agent|alerts|analysis|collectors|foundation|core|tests|bench|deploy|scripts|docs)"
    r"/[\w./-]*")
CHECKED_ENDS = (".py", ".c", ".md", ".sh", ".service", ".example", ".png", ".json", ".log", "/")
# A module written dotted: collectors.logreader.tail.cut_long_lines
PROJECT_MODULE = re.compile(r"^(?:agent|alerts|analysis|collectors|foundation|core)(?:\.\w+)+$")
# docs/development.md walks through adding a collector: the files it creates are named before their
# code blocks (<!-- walkthrough: collectors/uptime.py -->) and exist only in tests/test_walkthrough.py
WALKTHROUGH_FILE = re.compile(r"<!-- walkthrough: (\S+) -->")
DOC_MENTION = re.compile(r"(?<![\w./-])docs/[\w.-]+\.md")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")

_PARSER = MarkdownIt("commonmark").enable("table")


def _inline_tokens(markdown: str) -> Iterator[Token]:
    """Every inline token of the document (fenced and indented code produce none)."""
    for token in _PARSER.parse(markdown):
        if token.type == "inline":
            yield from token.children or []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def headings(markdown: str) -> list[str]:
    """The text of every heading, as rendered (markup gone, code spans' text kept)."""
    tokens = _PARSER.parse(markdown)
    out = []
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open":
            out.append("".join(child.content for child in inline.children or []
                               if child.type in ("text", "code_inline")))
    return out


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of the document; a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for text in headings(markdown):
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def targets(markdown: str) -> list[str]:
    """The target of every link and image."""
    out = []
    for token in _inline_tokens(markdown):
        if token.type == "link_open":
            out.append(str(token.attrs.get("href", "")))
        elif token.type == "image":
            out.append(str(token.attrs.get("src", "")))
    return out


def code_spans(markdown: str) -> list[str]:
    """The text of every inline code span."""
    return [token.content for token in _inline_tokens(markdown) if token.type == "code_inline"]


def link_problem(doc: Path, target: str, root: Path) -> str | None:
    """What is wrong with one link of ``doc``: a missing file or a missing heading; None when sound."""
    if not target or SCHEME.match(target):
        return None
    path_part, _, fragment = target.partition("#")
    dest = (doc.parent / unquote(path_part)).resolve() if path_part else doc
    where = f"{doc.relative_to(root)}: link {target}"
    if not dest.exists():
        return f"{where}: no such file"
    if fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest.read_text("utf-8")):
        return f"{where}: no heading #{fragment} in {dest.relative_to(root)}"
    return None


def link_problems(doc: Path, root: Path) -> list[str]:
    """Every broken link, image and anchor of one Markdown file."""
    problems = (link_problem(doc, target, root) for target in targets(doc.read_text(encoding="utf-8")))
    return [p for p in problems if p]


def module_exists(dotted: str, root: Path) -> bool:
    """A dotted name goes through real packages down to a real module; whatever follows the module
    (a class, a function) is not looked at."""
    path = root
    for part in dotted.split("."):
        if (path / f"{part}.py").is_file():
            return True
        if not (path / part / "__init__.py").is_file():
            return False
        path = path / part
    return True


def path_problems(doc: Path, root: Path) -> list[str]:
    """Every project file, folder or module named in a code span of ``doc`` that does not exist
    (the files a walk-through of ``doc`` creates count as existing)."""
    text = doc.read_text(encoding="utf-8")
    created = set(WALKTHROUGH_FILE.findall(text))
    out = []
    for span in code_spans(text):
        for named in PROJECT_PATH.findall(span):
            if named.endswith(CHECKED_ENDS) and named not in created and not (root / named).exists():
                out.append(f"{doc.relative_to(root)}: `{named}` does not exist")
        if PROJECT_MODULE.match(span) and not module_exists(span, root):
            out.append(f"{doc.relative_to(root)}: `{span}` is no module of the project")
    return out


def doc_mention_problems(name: str, text: str, root: Path) -> list[str]:
    """Every docs/*.md named in a file's text that does not exist."""
    return [f"{name}: names {mention}, which does not exist"
            for mention in sorted(set(DOC_MENTION.findall(text))) if not (root / mention).is_file()]


def project_files(root: Path) -> list[str]:
    """The repository's files: tracked, and new ones not ignored."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, text=True, check=True, timeout=60)
    return [name for name in listed.stdout.splitlines() if (root / name).is_file()]


# ---------------------------------------------------------------------------------------------
# the checker finds what it should


def test_slugs_follow_github() -> None:
    assert slug("The `auth_log` collector: SSH logins and failures, sudo, su, accounts") == (
        "the-auth_log-collector-ssh-logins-and-failures-sudo-su-accounts")
    assert slug("Spoken announcements (Home Assistant → Google Home)") == (
        "spoken-announcements-home-assistant--google-home")
    assert anchors("# A\n\n## Settings\n\n### Settings\n\n## Settings\n") == {
        "a", "settings", "settings-1", "settings-2"}


def test_links_in_code_are_not_links() -> None:
    text = "[a](one.md)\n\n```\n[b](two.md)\n```\n\n`[c](three.md)` and ![d](four.png)\n"
    assert targets(text) == ["one.md", "four.png"]


def test_the_checker_reports_a_broken_link_a_broken_anchor_and_a_stale_path(tmp_path: Path) -> None:
    (tmp_path / "manual").mkdir()
    (tmp_path / "foundation").mkdir()
    (tmp_path / "foundation" / "__init__.py").write_text("")
    (tmp_path / "foundation" / "trust.py").write_text("")
    (tmp_path / "manual" / "store.md").write_text("# The store\n\n## Backups\n")
    doc = tmp_path / "manual" / "guide.md"
    doc.write_text("# Guide\n\n"
                   "[sound](store.md#backups), [here](#guide), [web](https://example.org/#x)\n"
                   "[gone](nowhere.md), [wrong](store.md#recovery), [self](#nothing)\n\n"
                   "`foundation/trust.py` and `foundation.trust.is_safe`; stale: `core/trust.py`, "
                   "`foundation.gone.defang`; made below: `collectors/uptime.py`, not: "
                   "`collectors/uptme.py`\n\n<!-- walkthrough: collectors/uptime.py -->\n")
    links = link_problems(doc, tmp_path)
    assert links == ["manual/guide.md: link nowhere.md: no such file",
                     "manual/guide.md: link store.md#recovery: no heading #recovery in manual/store.md",
                     "manual/guide.md: link #nothing: no heading #nothing in manual/guide.md"]
    assert path_problems(doc, tmp_path) == [
        "manual/guide.md: `core/trust.py` does not exist",
        "manual/guide.md: `foundation.gone.defang` is no module of the project",
        "manual/guide.md: `collectors/uptme.py` does not exist"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "store.md").write_text("# The store\n")
    missing = "doc" + "s/gone.md"   # spelt apart, so this file names no missing doc itself
    assert doc_mention_problems("Makefile", f"# see {missing} and docs/store.md\n", tmp_path) == [
        f"Makefile: names {missing}, which does not exist"]


# ---------------------------------------------------------------------------------------------
# the project's documentation


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_link_image_and_anchor_resolves(doc: Path) -> None:
    assert link_problems(doc, ROOT) == []


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_project_path_named_exists(doc: Path) -> None:
    assert path_problems(doc, ROOT) == []


def test_every_docs_file_named_anywhere_exists() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of the project's files")
    problems = []
    for name in project_files(ROOT):
        text = (ROOT / name).read_bytes().decode("utf-8", errors="ignore")
        problems.extend(doc_mention_problems(name, text, ROOT))
    assert problems == []
