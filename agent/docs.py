"""Markdown tables for the documentation, made from config.py's comments and the detectors' KINDS.

Each generated table sits in one file between its markers, ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->``: the settings in docs/configuration.md, the finding kinds in docs/findings.md.

Run: .venv/bin/python -m agent.docs [docs]         (rewrites every generated block of README.md and docs/*.md)
     .venv/bin/python -m agent.docs settings|kinds  (prints one table)
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from analysis.detectors import all_kinds
from foundation.settings import DEFAULT_CONFIG, PROJECT_DIR

README = PROJECT_DIR / "README.md"
DOCS_DIR = PROJECT_DIR / "docs"

_SECTION = re.compile(r"^# --- (.+?) -+$")
_SETTING = re.compile(r"^([A-Z][A-Z0-9_]*) = (.+?)\s+# (.+)$")


def settings_table() -> str:
    """Every setting of config.py with its default and comment, by section."""
    out: list[str] = []
    for line in DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines():
        section = _SECTION.match(line)
        if section:
            out.append(f"\n**{section.group(1).capitalize()}**\n\n"
                       "| setting | default | meaning |\n|---|---|---|")
            continue
        setting = _SETTING.match(line)
        if setting:
            name, default, comment = setting.groups()
            default = default.replace("|", "\\|")
            out.append(f"| `{name}` | `{default}` | {comment} |")
    return "\n".join(out).strip() + "\n"


def kinds_table() -> str:
    """Every finding kind: source, rule severity, floor, meaning, what to do."""
    rows = ["| kind | source | rule severity | floor | when it clears | meaning | what to do |",
            "|---|---|---|---|---|---|---|"]
    rows.extend(k.describe() for k in all_kinds())
    return "\n".join(rows) + "\n"


def told_table() -> str:
    """Every finding kind as it is told, rendered from its example facts."""
    rows = ["| kind | headline | spoken | resolved |", "|---|---|---|---|"]
    for k in all_kinds():
        said = k.spoken(k.example)
        back = "(one-off event)" if k.event else k.recovered(k.example, {})
        cells = (k.headline(k.example, {}), said, back)
        rows.append(f"| `{k.kind}` | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {"settings": settings_table, "kinds": kinds_table,
                                        "told": told_table}
# The one file each generated table lives in.
HOMES: dict[str, Path] = {"settings": DOCS_DIR / "configuration.md", "kinds": DOCS_DIR / "findings.md",
                          "told": DOCS_DIR / "alerts.md"}


def doc_files() -> list[Path]:
    """README.md and every docs/*.md: the files whose generated blocks are rewritten."""
    return [README, *sorted(DOCS_DIR.glob("*.md"))]


def make_tables() -> dict[str, str]:
    """Every generated table, by name."""
    return {name: make() for name, make in TABLES.items()}


def replace_block(text: str, name: str, table: str) -> str:
    """``text`` with what stands between the markers of ``name`` set to ``table``."""
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _match: begin + table + end, text)


def render(text: str, tables: Mapping[str, str]) -> str:
    """Markdown text with every generated block (between its begin/end markers) made anew."""
    for name, table in tables.items():
        text = replace_block(text, name, table)
    return text


def rewrite(paths: Iterable[Path], tables: Mapping[str, str]) -> list[Path]:
    """Rewrite the generated blocks of each file in place; the files that changed."""
    changed: list[Path] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = render(text, tables)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    """``docs`` (the default) rewrites the documentation's tables; a table's name prints it."""
    command = argv[0] if argv else "docs"
    if command == "docs":
        for path in rewrite(doc_files(), make_tables()):
            print(f"rewrote {path.relative_to(PROJECT_DIR)}")
        return 0
    if command in TABLES:
        print(TABLES[command](), end="")
        return 0
    print(f"usage: python -m agent.docs [docs | {' | '.join(TABLES)}]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
