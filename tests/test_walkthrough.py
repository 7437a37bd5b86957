"""docs/development.md's walk-through of adding a collector, done for real on a copy of the tree.

The code blocks of its "Adding a collector" section become the files they are named for, its
registry lines go into the registries; then the layer contracts, ruff and mypy hold, its fixture
test passes, `--once` reports the new collector, and its detector finds a reboot.
"""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "development.md"
# <!-- walkthrough: PATH [DICT] --> then a python block: a file's whole text, or a line for DICT
BLOCK = re.compile(r"<!-- walkthrough: (\S+)(?: (\w+))? -->\n```python\n(.*?)```", re.S)
PACKAGES = ("agent", "alerts", "analysis", "collectors", "foundation")
TOP_FILES = ("monitor_agent.py", "config.py", "known_issues.json", "CONSTRAINTS.md", "pyproject.toml")
BIN = Path(sys.executable).parent


def walkthrough(text: str) -> list[tuple[str, str | None, str]]:
    """(path, the registry it adds a line to or None for a whole file, code) of each block."""
    return [(path, registry or None, code) for path, registry, code in BLOCK.findall(text)]


def add_entry(source: str, registry: str, line: str) -> str:
    """``source`` with ``line`` added as the last entry of the dict literal named ``registry``."""
    head = re.search(rf"^{registry}\b[^=]*= \{{\n", source, re.M)
    if head is None:
        raise ValueError(f"no dict literal {registry} = {{ ... }}")
    end = source.index("\n}\n", head.end())
    return source[:end + 1] + line.rstrip("\n") + "\n" + source[end + 1:]


def run(tree: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command in the copy, with nothing of this checkout's environment but PATH."""
    return subprocess.run(list(args), cwd=tree, capture_output=True, text=True, timeout=240,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tree), **env},
                          check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree with the walk-through's files and registry lines in it."""
    dest = tmp_path_factory.mktemp("walkthrough")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in TOP_FILES:
        shutil.copy(ROOT / name, dest / name)
    (dest / "tests").mkdir()
    for path, registry, code in walkthrough(GUIDE.read_text(encoding="utf-8")):
        target = dest / path
        if registry is None:
            target.write_text(code, encoding="utf-8")
        else:
            target.write_text(add_entry(target.read_text(encoding="utf-8"), registry, code),
                              encoding="utf-8")
    return dest


def test_the_guide_has_every_step() -> None:
    steps = [(path, registry) for path, registry, _ in
             walkthrough(GUIDE.read_text(encoding="utf-8"))]
    assert steps == [("collectors/uptime.py", None), ("tests/test_uptime.py", None),
                     ("collectors/__init__.py", "REGISTRY"), ("analysis/detect_uptime.py", None),
                     ("analysis/detectors.py", "DETECTORS")]


def test_a_registry_line_lands_inside_its_dict() -> None:
    source = 'A = 1\nREGISTRY: dict[str, str] = {\n    "a": "m.a",\n}\nB = {\n}\n'
    assert add_entry(source, "REGISTRY", '    "b": "m.b",\n') == (
        'A = 1\nREGISTRY: dict[str, str] = {\n    "a": "m.a",\n    "b": "m.b",\n}\nB = {\n}\n')
    with pytest.raises(ValueError, match="no dict literal"):
        add_entry(source, "DETECTORS", '    "b": "m.b",\n')


def test_the_new_modules_keep_the_layers_and_pass_ruff_and_mypy(tree: Path) -> None:
    layers = run(tree, "lint-imports", "--no-cache", PYTHONPATH=str(tree))
    assert layers.returncode == 0 and "0 broken" in layers.stdout, layers.stdout + layers.stderr
    new = ["collectors/uptime.py", "analysis/detect_uptime.py", "collectors/__init__.py",
           "analysis/detectors.py"]
    lint = run(tree, "ruff", "check", "--no-cache", *new)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    types = run(tree, "mypy", "--no-incremental", "collectors/uptime.py", "analysis/detect_uptime.py")
    assert types.returncode == 0, types.stdout + types.stderr


def test_its_fixture_test_passes(tree: Path) -> None:
    proc = run(tree, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_uptime.py", PYTHONPATH=str(tree))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 passed" in proc.stdout


def test_one_cycle_reports_it_and_its_detector_finds_a_reboot(tree: Path) -> None:
    data = tree / "data"

    def once() -> dict:
        proc = run(tree, sys.executable, "monitor_agent.py", "--once", "--json",
                   MONITOR_DATA_DIR=str(data), MONITOR_COLLECTORS="uptime,processes",
                   MONITOR_OLLAMA_HOST="http://127.0.0.1:9")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = once()
    assert first["collectors"]["uptime"]["ok"] is True
    seen = first["observations"]["uptime"]
    booted = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(seen["uptime_s"] - booted) < 600          # the machine's own uptime, read now
    assert [f for f in first["findings"] if f["source"] == "uptime"] == []  # the first boot seen
    with sqlite3.connect(data / "monitor.db") as db:
        assert db.execute("SELECT COUNT(*) FROM series WHERE name = 'uptime.seconds'"
                          ).fetchone()[0] == 1
        # as if the last cycle had seen an earlier boot: the machine restarted in between
        db.execute("UPDATE collector_state SET state = ? WHERE name = 'detect:uptime'",
                   (json.dumps({"booted_at": seen["booted_at"] - 3600}),))
    [rebooted] = [f for f in once()["findings"] if f["source"] == "uptime"]
    assert (rebooted["kind"], rebooted["severity"]) == ("host_rebooted", "low")


def test_a_misspelt_name_stops_the_agent_with_a_suggestion(tree: Path) -> None:
    proc = run(tree, sys.executable, "monitor_agent.py", "--once",
               MONITOR_DATA_DIR=str(tree / "data-typo"), MONITOR_COLLECTORS="uptme")
    assert proc.returncode == 2
    assert "COLLECTORS: 'uptme' is not a collector (did you mean uptime?)" in proc.stderr
