"""pyproject.toml and the pinned requirement files agree: the same names, each pin inside its range."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> dict[str, str]:
    """name -> exact version of a pip requirements file (``-r`` includes are not followed)."""
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{path.name}: {line} is not an exact pin"
        out[canonicalize_name(req.name)] = spec[0].version
    return out


def ranges(requirements: list[str]) -> dict[str, Requirement]:
    """name -> the requirement as pyproject.toml declares it."""
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in requirements}


def disagreements(pinned: dict[str, str], declared: dict[str, Requirement]) -> list[str]:
    """Every way a pin file and pyproject's list differ, as a sentence each."""
    out = [f"{name} is pinned but not declared in pyproject.toml" for name in pinned.keys() - declared]
    out += [f"{name} is declared in pyproject.toml but not pinned" for name in declared.keys() - pinned]
    out += [f"{name}=={pinned[name]} is outside pyproject's {declared[name].specifier}"
            for name in pinned.keys() & declared.keys()
            if not declared[name].specifier.contains(pinned[name], prereleases=True)]
    return sorted(out)


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.mark.parametrize(("pin_file", "declared"), [
    ("requirements.txt", PROJECT["dependencies"]),
    ("requirements-dev.txt", PROJECT["optional-dependencies"]["test"]),
])
def test_the_pins_match_pyproject(pin_file: str, declared: list[str]) -> None:
    assert disagreements(pins(ROOT / pin_file), ranges(declared)) == []


def test_a_drifted_pin_is_caught() -> None:
    declared = ranges(["numpy>=2.4.6,<3", "rich>=15,<16"])
    assert disagreements({"numpy": "3.0.0", "psutil": "7.2.2"}, declared) == [
        "numpy==3.0.0 is outside pyproject's <3,>=2.4.6",
        "psutil is pinned but not declared in pyproject.toml",
        "rich is declared in pyproject.toml but not pinned"]
