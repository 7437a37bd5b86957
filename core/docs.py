"""Markdown tables for the README, made from config.py's comments and the detectors' KINDS.

Run: .venv/bin/python -m core.docs settings|kinds
"""
from __future__ import annotations

import re
import sys

from core.settings import DEFAULT_CONFIG

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

    rows = ["| kind | source | rule severity | floor | meaning | what to do |",
            "|---|---|---|---|---|---|"]
    rows.extend(k.describe() for k in all_kinds())
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print({"settings": settings_table, "kinds": kinds_table}[sys.argv[1]]())
