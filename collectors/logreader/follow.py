"""Wake the agent when a log it reads grows: inotify on the log files and on the journal's folders.

One thread sleeps in poll() on an inotify descriptor (inotify_simple) and a stop pipe, so a quiet
machine costs nothing: no timer, no polling. What it watches:

- a log file: the file itself for writes (IN_MODIFY: appends, copytruncate's truncation), and its
  folder for the file being created, renamed in or deleted (a rotation in create mode, a delete and
  recreate); a new file of that name gets its own watch again;
- the journal: each journal folder (JOURNAL_DIRECTORY, or /var/log/journal and /run/log/journal,
  and their machine-id folders) for journal files written, created or deleted. journald makes its
  writes visible to inotify on purpose (it truncates the file to its own size after each write:
  this is what sd_journal_wait() waits on), and rotation and vacuuming create and delete files.

Each relevant event calls ``on_change`` (the agent coalesces them: at most one event cycle a
second). When inotify cannot be had (the fs.inotify.max_user_watches or max_user_instances limit
is reached), ``start`` logs one warning and returns False: the scheduled cycles go on alone.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)

SYSTEM_JOURNALS = (Path("/var/log/journal"), Path("/run/log/journal"))
FILE_EVENTS = flags.MODIFY | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF
FOLDER_EVENTS = flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.MOVED_FROM
JOURNAL_EVENTS = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.MOVED_FROM
LIMITS = (errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOMEM)
READ_EVENTS = 4096    # events drained per wake-up at most (the kernel queue holds the rest)


@dataclass(frozen=True)
class Targets:
    """What one log collector reads: files, and whether the journal (and which folder of it)."""

    files: tuple[Path, ...] = ()
    journal: bool = False
    journal_directory: Path | None = None

    def __or__(self, other: Targets) -> Targets:
        return Targets(tuple(dict.fromkeys(self.files + other.files)),
                       self.journal or other.journal,
                       self.journal_directory or other.journal_directory)


def targets(path: Path | str, backend: str, journal_directory: str) -> Targets:
    """The targets of one log read with backend "auto" (both: it may switch), "file" or "journal"."""
    directory = Path(journal_directory) if journal_directory else None
    return Targets(files=(Path(path),) if backend != "journal" else (),
                   journal=backend != "file", journal_directory=directory)


class FollowUnavailable(OSError):
    """inotify cannot be used here (a limit is reached, or the kernel lacks it)."""


@dataclass
class _Watches:
    """Watch descriptors and what each one watches."""

    files: dict[int, Path] = field(default_factory=dict)        # wd -> a followed log file
    folders: dict[int, tuple[Path, set[str]]] = field(default_factory=dict)  # wd -> folder, names
    journals: set[int] = field(default_factory=set)              # wds of journal folders
    roots: dict[int, Path] = field(default_factory=dict)         # wds of /var/log/journal itself


class Follower:
    """Calls ``on_change`` when a followed log file or journal folder changes; see the module."""

    def __init__(self, wanted: Targets, on_change: Callable[[], None]) -> None:
        self.wanted = wanted
        self.on_change = on_change
        self._inotify: INotify | None = None
        self._watches = _Watches()
        self._stop_r, self._stop_w = -1, -1
        self._thread: threading.Thread | None = None
        self.changes = 0            # relevant events seen (coalesced or not): for tests and status

    # --- start and stop ----------------------------------------------------------------------
    def start(self) -> bool:
        """Watch everything wanted and start the thread; False (warned once) without inotify."""
        try:
            self._inotify = INotify()
            for path in self.wanted.files:
                self._watch_file(path)
            if self.wanted.journal:
                for folder in self._journal_roots():
                    self._watch_journal_root(folder)
        except OSError as err:
            self._close()
            if err.errno in LIMITS:
                log.warning("cannot follow the logs (%s: the inotify limit "
                            "fs.inotify.max_user_watches or max_user_instances is reached); new "
                            "lines are read by the scheduled cycles alone", os.strerror(err.errno))
            else:
                log.warning("cannot follow the logs (%s); new lines are read by the scheduled "
                            "cycles alone", err)
            return False
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="log-follower", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the thread and close the descriptors."""
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._stop_r = self._stop_w = -1
        self._close()

    def _close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._watches = _Watches()

    # --- watches -----------------------------------------------------------------------------
    def _add(self, path: Path, mask: int) -> int | None:
        """A watch on ``path``; None when it does not exist (yet). A limit raises."""
        if self._inotify is None:
            return None
        try:
            return int(self._inotify.add_watch(str(path), mask))
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return None
            raise

    def _watch_file(self, path: Path) -> None:
        folder = self._add(path.parent, FOLDER_EVENTS)
        if folder is not None:
            self._watches.folders.setdefault(folder, (path.parent, set()))[1].add(path.name)
        wd = self._add(path, FILE_EVENTS)
        if wd is not None:
            self._watches.files[wd] = path

    def _journal_roots(self) -> Iterable[Path]:
        if self.wanted.journal_directory is not None:
            return (self.wanted.journal_directory,)
        return SYSTEM_JOURNALS

    def _watch_journal_root(self, root: Path) -> None:
        """A journal folder, and the machine-id folders in it (journald's layout)."""
        wd = self._add(root, JOURNAL_EVENTS | flags.ONLYDIR)
        if wd is None:
            return
        self._watches.journals.add(wd)
        self._watches.roots[wd] = root
        try:
            entries = list(os.scandir(root))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sub = self._add(Path(entry.path), JOURNAL_EVENTS | flags.ONLYDIR)
                if sub is not None:
                    self._watches.journals.add(sub)

    # --- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        poller = select.poll()
        poller.register(inotify.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}       # asleep until something happens
            if self._stop_r in ready:
                return
            try:
                events = inotify.read(timeout=0)[:READ_EVENTS]
                relevant = self._relevant(events)
            except OSError as err:                        # a limit hit while re-watching
                log.warning("stopped following the logs (%s); the scheduled cycles go on",
                            os.strerror(err.errno or 0))
                return
            if relevant:
                self.changes += relevant
                self.on_change()

    def _relevant(self, events: Sequence[Any]) -> int:
        """How many events are about a followed log; re-watches what rotation replaced."""
        count = 0
        w = self._watches
        for event in events:
            wd, mask, name = event.wd, event.mask, event.name
            if mask & flags.Q_OVERFLOW:
                count += 1                                    # lost events: read to be sure
            elif wd in w.files:
                count += 1
                if mask & (flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED):
                    w.files.pop(wd, None)                     # rotated away: the name is re-watched
            elif wd in w.folders and name in w.folders[wd][1]:
                count += 1
                folder = w.folders[wd][0]
                if mask & (flags.CREATE | flags.MOVED_TO):
                    new = self._add(folder / name, FILE_EVENTS)
                    if new is not None:
                        w.files[new] = folder / name
            elif wd in w.journals:
                count += 1
                if wd in w.roots and mask & flags.CREATE and mask & flags.ISDIR:
                    sub = self._add(w.roots[wd] / name, JOURNAL_EVENTS | flags.ONLYDIR)
                    if sub is not None:
                        w.journals.add(sub)
        return count
