"""The README's generated tables match config.py and the detectors' declared finding kinds."""
from __future__ import annotations

import re

from analysis.detectors import all_kinds
from agent.docs import README, render_readme
from foundation.settings import Settings


def test_readme_tables_are_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert render_readme(text) == text, "run: .venv/bin/python -m agent.docs readme"


def test_readme_documents_every_setting_and_kind() -> None:
    text = README.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`{name}`" in text, name
    for kind in all_kinds():
        assert re.search(rf"\| `{kind.kind}` \|", text), kind.kind
        assert kind.action and kind.title


def test_kinds_are_unique_and_declared_once() -> None:
    names = [k.kind for k in all_kinds()]
    assert len(names) == len(set(names))
