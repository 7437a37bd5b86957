"""Opening files the agent reads without ever blocking on something that is not a regular file.

A FIFO blocks open() until a writer comes, and read() until it writes; a character device such
as /dev/zero never ends; a socket cannot be opened at all. So a path is looked at with stat
first, opened with O_NONBLOCK (a FIFO's open then returns at once), and the open file is checked
again with fstat (the path may have been swapped in between).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

REGULAR = "regular file"
KINDS = ((stat.S_ISREG, REGULAR), (stat.S_ISDIR, "directory"),
         (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
         (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


class NotRegularFile(OSError):
    """The path names something other than a regular file (the message says what)."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path} is a {kind}, not a regular file")
        self.path = str(path)
        self.kind = kind


def file_kind(mode: int) -> str:
    """What a stat mode describes, in words ("FIFO (named pipe)", "regular file", ...)."""
    return next((name for test, name in KINDS if test(mode)), "special file")


def path_kind(path: Path | str) -> str | None:
    """What ``path`` is (following symlinks, as open does), or None when nothing is there."""
    try:
        return file_kind(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


def open_regular(path: Path | str, buffering: int = -1) -> BinaryIO:
    """Open a regular file for binary reading; NotRegularFile for anything else, never blocking."""
    kind = path_kind(path)
    if kind is not None and kind != REGULAR:
        raise NotRegularFile(path, kind)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, file_kind(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise
