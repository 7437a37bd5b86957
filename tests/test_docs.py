"""The documentation's generated tables match config.py and the detectors' declared finding kinds."""
from __future__ import annotations

import re
from pathlib import Path

from agent.docs import HOMES, TABLES, doc_files, make_tables, render, replace_block, rewrite
from analysis.detectors import all_kinds
from foundation.settings import Settings

FIX = "run: .venv/bin/python -m agent.docs"


def test_every_generated_block_is_current() -> None:
    tables = make_tables()
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        assert render(text, tables) == text, f"{path.name}: {FIX}"


def test_each_table_lives_in_its_docs_file_once() -> None:
    assert set(HOMES) == set(TABLES)
    for name, home in HOMES.items():
        for path in doc_files():
            count = path.read_text(encoding="utf-8").count(f"<!-- {name}:begin -->")
            assert count == (1 if path == home else 0), f"{path.name} holds {count} {name} tables"


def test_configuration_documents_every_setting() -> None:
    text = HOMES["settings"].read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`{name}`" in text, name


def test_findings_documents_every_kind() -> None:
    text = HOMES["kinds"].read_text(encoding="utf-8")
    for kind in all_kinds():
        assert re.search(rf"\| `{kind.kind}` \|", text), kind.kind
        assert kind.action and kind.title


def test_a_stale_block_is_made_anew_and_the_rest_kept() -> None:
    text = "before\n<!-- kinds:begin -->\nold row\n<!-- kinds:end -->\nafter\n"
    assert replace_block(text, "kinds", "new row\n") == (
        "before\n<!-- kinds:begin -->\nnew row\n<!-- kinds:end -->\nafter\n")
    assert render(text, {"settings": "x\n"}) == text   # a block of another name is untouched


def test_the_docs_command_rewrites_only_what_changed(tmp_path: Path) -> None:
    stale = tmp_path / "stale.md"
    stale.write_text("<!-- settings:begin -->\nold\n<!-- settings:end -->\n", encoding="utf-8")
    plain = tmp_path / "plain.md"
    plain.write_text("no generated block\n", encoding="utf-8")
    assert rewrite([stale, plain], {"settings": "new\n"}) == [stale]
    assert stale.read_text(encoding="utf-8") == "<!-- settings:begin -->\nnew\n<!-- settings:end -->\n"


def test_kinds_are_unique_and_declared_once() -> None:
    names = [k.kind for k in all_kinds()]
    assert len(names) == len(set(names))
