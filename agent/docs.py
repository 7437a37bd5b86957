"""Markdown tables for the README, made from config.py's comments and the detectors' KINDS.

Run: .venv/bin/python -m agent.docs readme   (rewrites README.md's generated tables in place)
     .venv/bin/python -m agent.docs settings|kinds   (prints one table)
"""
from __future__ import annotations

import re
import sys
from typing import Callable

from foundation.settings import DEFAULT_CONFIG, PROJECT_DIR

README = PROJECT_DIR / "README.md"

_SECTION = re.compile(r"^# --- (.+?) -+$")
_SETTING = re.compile(r"^([A-Z][A-Z0-9_]*) = (.+?)\s+# (.+)$")


def settings_table() -> str:
    """Every setting of config.py with its default and comment, by section."""
    out = []
    for line in DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines():
        section = _SECTION.match(line)
        if section:
            out.append(f"\n**{section.group(1).capitalize()}**\n\n| setting | default | meaning |\n|---|---|---|")
            continue
        setting = _SETTING.match(line)
        if setting:
            name, default, comment = setting.groups()
            default = default.replace("|", "\\|")
            out.append(f"| `{name}` | `{default}` | {comment} |")
    return "\n".join(out).strip() + "\n"


def kinds_table() -> str:
    """Every finding kind: source, rule severity, floor, meaning, what to do."""
    from analysis.detectors import all_kinds

    rows = ["| kind | source | rule severity | floor | when it clears | meaning | what to do |",
            "|---|---|---|---|---|---|---|"]
    rows.extend(k.describe() for k in all_kinds())
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {"settings": settings_table, "kinds": kinds_table}


def render_readme(text: str) -> str:
    """README text with every generated block (between its begin/end markers) made anew."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + m.group(2), text)
    return text


if __name__ == "__main__":
    if sys.argv[1] == "readme":
        README.write_text(render_readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(TABLES[sys.argv[1]]())
