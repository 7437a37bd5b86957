"""known_issues.json and CONSTRAINTS.md, re-read when they change, without a restart.

Before each cycle the files' identity (device, inode, size, modification time) is compared with
the version in force; a changed file is read again through the same checks as at start (trusted
owner and mode, valid content). A broken new version is logged once, as an error, and the last
good one stays in force until the file changes again. A file removed means none, as at start.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from analysis.known_issues import KnownIssues, load_known_issues
from analysis.ollama_judge import load_constraints
from foundation.settings import ConfigError, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Signature = tuple[int, ...] | None


def signature(path: Path) -> Signature:
    """What tells one version of a file from another; None when there is no file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return (-1, err.errno or 0)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Watched(Generic[T]):
    """One steering file: the version in force and how to load a new one."""

    def __init__(self, path: Path, setting: str, load: Callable[[], T]) -> None:
        self.path = path
        self.setting = setting
        self._load = load
        self._signature = signature(path)   # before the read: a change during it is seen next time
        self.value = load()                  # ConfigError at start, as before
        self._refused: list[Signature] = []  # the broken version already reported, if any

    def poll(self) -> bool:
        """Load the file again if it changed; True when a new version is now in force."""
        now = signature(self.path)
        if now == self._signature or now in self._refused:
            return False
        try:
            value = self._load()
        except ConfigError as err:
            self._refused = [now]
            log.error("%s (%s) changed but cannot be used, the last good version stays in force "
                      "until it is fixed: %s", self.path, self.setting, err)
            return False
        self._signature, self.value, self._refused = now, value, []
        log.info("%s (%s) changed: reloaded", self.path, self.setting)
        return True


class Steering:
    """Both steering files, loaded at start (ConfigError when broken) and watched afterwards."""

    def __init__(self, settings: Settings) -> None:
        relaxed = settings.ALLOW_UNSAFE_FILES
        self.known_issues: Watched[KnownIssues] = Watched(
            settings.KNOWN_ISSUES_PATH, "KNOWN_ISSUES_PATH",
            lambda: load_known_issues(settings.KNOWN_ISSUES_PATH, relaxed=relaxed))
        self.constraints: Watched[str] = Watched(
            settings.CONSTRAINTS_PATH, "CONSTRAINTS_PATH",
            lambda: load_constraints(settings.CONSTRAINTS_PATH, relaxed))

    def poll(self) -> tuple[KnownIssues | None, str | None]:
        """The new known issues and the new constraints, each None when unchanged."""
        known = self.known_issues.value if self.known_issues.poll() else None
        constraints = self.constraints.value if self.constraints.poll() else None
        return known, constraints
