"""Files that steer the agent are trusted only when only root or the agent's own user can write them.

The rule is OpenSSH's StrictModes (openssh-portable misc.c safe_path() and safe_path_fd(); auth.c
auth_secure_path() in older releases): the file is a regular file owned by root or the user and
not group- or world-writable, and so is every directory from it up to /. One deliberate
difference: a root-owned directory with the sticky bit (/tmp, /var/tmp) is accepted as a parent,
since there no one but root can rename or remove another user's entry.

The file is opened first and its descriptor is checked (fstat) and read, so what is checked is
what is read: a file swapped after the check is never the one executed. The directories are
checked along both the path as given and its canonical form, so a symlink that sits in a folder
others can write (and could repoint) is refused too.

``relaxed`` (MONITOR_ALLOW_UNSAFE_FILES=1 or --allow-unsafe-files, never a file) turns refusals
into one warning per file, for development checkouts only.
"""
from __future__ import annotations

import logging
import os
import pwd
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import ConfigError
from foundation.files import NotRegularFile, open_regular

log = logging.getLogger(__name__)

ALLOW_ENV = "MONITOR_ALLOW_UNSAFE_FILES"
ALLOW_FLAG = "--allow-unsafe-files"
_TRUE = frozenset({"1", "true", "yes", "on"})
_warned: set[str] = set()


class UnsafeFileError(ConfigError):
    """A file or folder that steers the agent can be changed by someone other than root or the
    agent's user."""


@dataclass(frozen=True)
class Problem:
    """One unsafe component: the path, what is wrong with it and the command that fixes it."""

    path: str
    wrong: str
    fix: str


def env_relaxed(value: str | None) -> bool:
    """True when MONITOR_ALLOW_UNSAFE_FILES says yes (1, true, yes, on)."""
    return (value or "").strip().lower() in _TRUE


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _owner_text(uid: int) -> str:
    name = _user_name(uid)
    return f"uid {uid}" if name == str(uid) else f"{name} (uid {uid})"


def _judge(path: str, st: os.stat_result, uid: int, parent: bool) -> list[Problem]:
    """The problems of one component (empty when it is safe)."""
    if parent and st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
        return []  # /tmp: only root may replace what others put in it
    quoted = shlex.quote(path)
    problems = []
    if st.st_uid not in (0, uid):
        problems.append(Problem(path, f"is owned by {_owner_text(st.st_uid)}, not by root or the "
                                      f"agent's user {_user_name(uid)}",
                                f"chown {shlex.quote(_user_name(uid))} {quoted}"))
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002))
                           if st.st_mode & bit)
        problems.append(Problem(path, f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})",
                                f"chmod go-w {quoted}"))
    return problems


def _prefixes(path: str) -> Iterator[str]:
    """Every directory above ``path`` (absolute, normalised), nearest first, / last."""
    current = os.path.dirname(path)
    while True:
        yield current
        if current == os.path.dirname(current):
            return
        current = os.path.dirname(current)


def _parents(path: Path) -> list[str]:
    """The existing directories above the path as given and above its canonical form."""
    given = os.path.abspath(path)
    seen: dict[str, None] = {}
    for start in (given, os.path.realpath(given)):
        for directory in _prefixes(start):
            seen.setdefault(directory)
    return [d for d in seen if os.path.isdir(d)]


def _directory_problems(path: Path, uid: int) -> list[Problem]:
    problems = []
    for directory in _parents(path):
        try:
            problems.extend(_judge(directory, os.stat(directory), uid, parent=True))
        except OSError as err:
            problems.append(Problem(directory, f"cannot be checked ({err.strerror})",
                                    f"ls -ld {shlex.quote(directory)}"))
    return problems


def _refuse(what: str, path: Path, problems: list[Problem], relaxed: bool) -> None:
    if not problems:
        return
    target = os.path.abspath(path)
    details = "; ".join(
        (p.wrong if p.path == target else f"its folder {p.path} {p.wrong}") for p in problems)
    fixes = "; ".join(dict.fromkeys(p.fix for p in problems))
    message = (f"{what} {path}: {details}; only root or the agent's own user may be able to "
               f"change what steers the agent. Fix: {fixes}")
    if not relaxed:
        raise UnsafeFileError(message)
    if target not in _warned:  # once per file and process, however often it is read
        _warned.add(target)
        log.warning("%s (accepted: unsafe files are allowed by %s=1 or %s, for development only)",
                    message, ALLOW_ENV, ALLOW_FLAG)


def read_trusted(path: Path, what: str, *, relaxed: bool = False,
                 max_bytes: int | None = None) -> bytes:
    """The bytes of a steering file, read from the descriptor that was checked.

    UnsafeFileError names the file and the fix; FileNotFoundError passes through once the folders
    that would hold the file are found safe (else someone could plant it); other OSErrors pass.
    """
    uid = os.geteuid()
    try:
        fh = open_regular(path)  # a FIFO must not block; the descriptor is checked, then read
    except FileNotFoundError:
        _refuse(what, path, _directory_problems(path, uid), relaxed)
        raise
    except NotRegularFile as err:
        raise UnsafeFileError(f"{what} {path}: is not a regular file") from err
    with fh:
        st = os.fstat(fh.fileno())
        problems = _judge(os.path.abspath(path), st, uid, parent=False)
        _refuse(what, path, problems + _directory_problems(path, uid), relaxed)
        limit = -1 if max_bytes is None else max_bytes + 1
        return fh.read(limit)


def check_folder(path: Path, what: str, *, relaxed: bool = False) -> None:
    """Refuse (UnsafeFileError) a data folder that others can write, or one in such a folder.

    A folder not made yet is judged by the folders that will hold it.
    """
    uid = os.geteuid()
    problems: list[Problem] = []
    try:
        st: os.stat_result | None = os.stat(path)
    except OSError:  # absent, or under a file: the store says it cannot open it (exit 1)
        st = None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeFileError(f"{what} {path}: is not a folder")
        problems = _judge(os.path.abspath(path), st, uid, parent=False)
    _refuse(what, path, problems + _directory_problems(path, uid), relaxed)
