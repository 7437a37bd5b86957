"""Where the embedded defaults' relative paths lead: a checkout, or an installed agent (pip, pipx).

In a checkout (config.py beside pyproject.toml: `make run`, `make install`, the container image)
the relative paths of config.py are relative to the current folder, as always. An installed agent
has no such folder, and its code lies in site-packages, where nothing of the operator's belongs.
There the embedded defaults of three settings lead to the places of the user who runs it
(docs/install.md); a value from `--config` or MONITOR_<NAME> is taken as given, in both cases:

- DATA_DIR: /var/lib/homelab-monitor for root, else $XDG_STATE_HOME/homelab-monitor
  (~/.local/state/homelab-monitor);
- KNOWN_ISSUES_PATH, CONSTRAINTS_PATH: the operator's file in /etc/homelab-monitor for root, else
  in $XDG_CONFIG_HOME/homelab-monitor (~/.config/homelab-monitor), when it exists there; else the
  copy shipped in the package (foundation/defaults/, put there by setup.py), the same files a
  checkout starts with.
"""
from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from foundation.errors import ConfigError

CODE_ROOT = Path(__file__).resolve().parent.parent   # the checkout, or site-packages when installed
APP = "homelab-monitor"
SHIPPED = "defaults"                                   # foundation/defaults/ in a wheel (setup.py)
STEERING = ("KNOWN_ISSUES_PATH", "CONSTRAINTS_PATH")


def in_checkout(root: Path = CODE_ROOT) -> bool:
    """True when the code runs from a checkout (its config.py beside pyproject.toml)."""
    return (root / "pyproject.toml").is_file()


def _home(environ: Mapping[str, str], euid: int) -> Path:
    home = environ.get("HOME", "")
    if os.path.isabs(home):
        return Path(home)
    try:
        return Path(pwd.getpwuid(euid).pw_dir)
    except KeyError:
        raise ConfigError(f"DATA_DIR: uid {euid} has neither HOME nor an entry in /etc/passwd, so "
                          "an installed agent has no folder of its own; set MONITOR_DATA_DIR "
                          "(and HOME)") from None


def _xdg(environ: Mapping[str, str], var: str, euid: int, fallback: str) -> Path:
    """An XDG base folder: the variable when it is absolute (the spec ignores a relative one)."""
    value = environ.get(var, "")
    return Path(value) if os.path.isabs(value) else _home(environ, euid) / fallback


def data_dir(environ: Mapping[str, str], euid: int) -> Path:
    """An installed agent's default DATA_DIR."""
    if euid == 0:
        return Path("/var/lib") / APP
    return _xdg(environ, "XDG_STATE_HOME", euid, ".local/state") / APP


def config_dir(environ: Mapping[str, str], euid: int) -> Path:
    """Where an installed agent looks for the operator's known_issues.json and CONSTRAINTS.md."""
    if euid == 0:
        return Path("/etc") / APP
    return _xdg(environ, "XDG_CONFIG_HOME", euid, ".config") / APP


def shipped(name: str) -> Path | None:
    """The copy of an operator's file that the installed package carries, if it does."""
    found = resources.files("foundation").joinpath(SHIPPED, name)
    return Path(str(found)) if found.is_file() else None


def installed_defaults(defaults: Mapping[str, Any], environ: Mapping[str, str],
                       euid: int | None = None) -> dict[str, Path]:
    """The embedded defaults' relative paths, moved where an installed agent keeps them."""
    euid = os.geteuid() if euid is None else euid
    out: dict[str, Path] = {}
    if "DATA_DIR" in defaults and not Path(defaults["DATA_DIR"]).is_absolute():
        out["DATA_DIR"] = data_dir(environ, euid)
    for name in STEERING:
        if name not in defaults or Path(defaults[name]).is_absolute():
            continue
        own = config_dir(environ, euid) / Path(defaults[name]).name
        packaged = shipped(own.name)
        out[name] = packaged if packaged is not None and not own.exists() else own
    return out
