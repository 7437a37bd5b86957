"""The layers of docs/development.md hold, and import-linter's contracts bite on a copy that breaks them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "alerts", "analysis", "collectors", "foundation")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the packages of ``tree``, with the contracts of its pyproject.toml."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=240, check=False)


def copy_of_the_packages(dest: Path) -> Path:
    """The five layer packages (Python files only) and pyproject.toml, copied into ``dest``."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns(
            "__pycache__", "*.so", "*.c"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_contract() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # the foundation reaching up to the agent: the arrow this issue removed (core.budget)
    ("foundation/settings.py", "import agent.cycle", "layers: agent > alerts"),
    # analysis reaching up to the alerts: known_issues once took Judged from alerts.policy
    ("analysis/known_issues.py", "from alerts.policy import decide", "layers: agent > alerts"),
    # a circle inside the auth family: the counts importing the scanner that fills them
    ("collectors/auth/counts.py", "from collectors.auth import scanner", "no import cycles"),
    # a circle between two analysis modules, as judge and ollama_judge once were
    ("analysis/rules.py", "from analysis import ollama_judge", "no import cycles"),
    # the shared log reader depending on a collector built on it
    ("collectors/logreader/tail.py", "import collectors.auth_log", "the shared log reader"),
])
def test_a_new_upward_import_or_cycle_fails(tmp_path: Path, module: str, line: str,
                                            contract: str) -> None:
    tree = copy_of_the_packages(tmp_path)
    target = tree / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    run = lint_imports(tree)
    assert run.returncode != 0, run.stdout
    broken = [row for row in run.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), run.stdout
