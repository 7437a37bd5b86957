"""The dashboard's one operator password: a salted scrypt hash in DATA_DIR/web-password.json.

`python monitor_agent.py web-password` reads the password from standard input (twice, without
echo, on a terminal; the first line of a pipe otherwise), never from the command line, where
every user could read it in /proc. The file holds the scrypt parameters beside the salt and the
hash, so they can be raised later without locking anyone out; it is written 0600 and atomically
(a temporary file renamed over the old one), and never into the store: no secret is in the store.
The running dashboard reads it again when it changes, and a change ends every session.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
import time
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from foundation.settings import Settings
from foundation.store.files import fsync_dir, open_private

FILE_NAME = "web-password.json"
SCHEME = "scrypt"
# OWASP's password storage cheat sheet lists N=2**17, r=8, p=1 (128 MiB a try) and, as equally
# strong, N=2**14, r=8, p=5: the same work in 16 MiB, which suits a dashboard whose whole process
# stays under 60 MB. About 0.2 s a try here; tries run one at a time (agent/web/pages.py).
N, R, P, DKLEN, SALT_BYTES = 2**14, 8, 5, 64, 16
LIMITS = {"n": (2**14, 2**20), "r": (8, 32), "p": (1, 16), "dklen": (32, 128)}
MIN_LENGTH = 8            # characters
MAX_BYTES = 1024          # a longer line on stdin is a mistake (a file piped in), not a password
FILE_MAX_BYTES = 4096
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CLI = "python monitor_agent.py web-password"


class PasswordError(Exception):
    """The password file is unsafe, unreadable or not one web-password wrote (says the fix)."""


class UsageError(Exception):
    """The password given is empty, too short, too long, or the two entries differ (exit 2)."""


def password_path(settings: Settings) -> Path:
    """Where the dashboard's password hash lives: DATA_DIR/web-password.json."""
    return settings.DATA_DIR / FILE_NAME


def _normal(password: str) -> bytes:
    # one form for the same characters, whether typed in a terminal or sent by a browser
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # scrypt needs 128 * r * (n + p + 2) bytes; OpenSSL refuses above maxmem (32 MiB by default)
    return hashlib.scrypt(_normal(password), salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=128 * r * (n + p + 2) + (1 << 20))


def make_record(password: str, now: float | None = None) -> dict[str, Any]:
    """The file's content for a password: scheme, parameters, salt and hash (base64)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(password, salt, N, R, P, DKLEN)
    return {"scheme": SCHEME, "n": N, "r": R, "p": P, "dklen": DKLEN,
            "salt": base64.b64encode(salt).decode("ascii"),
            "hash": base64.b64encode(digest).decode("ascii"),
            "set_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


def check_record(record: Any, path: Path) -> dict[str, Any]:
    """The record when it is one web-password wrote, with parameters within bounds; else
    PasswordError (a weaker or absurd parameter would make logins trivial or a denial of service)."""
    problem = f"{path} is not a password file written by web-password; set it again: {CLI}"
    if not isinstance(record, Mapping) or record.get("scheme") != SCHEME:
        raise PasswordError(problem)
    for name, (low, high) in LIMITS.items():
        value = record.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise PasswordError(f"{problem} ({name} must be {low} to {high})")
    if record["n"] & (record["n"] - 1):
        raise PasswordError(f"{problem} (n must be a power of 2)")
    try:
        salt = base64.b64decode(str(record.get("salt")), validate=True)
        digest = base64.b64decode(str(record.get("hash")), validate=True)
    except (binascii.Error, ValueError) as err:
        raise PasswordError(f"{problem} ({err})") from err
    if len(salt) < SALT_BYTES or len(digest) != record["dklen"]:
        raise PasswordError(problem)
    return dict(record)


def verify(password: str, record: Mapping[str, Any]) -> bool:
    """True when ``password`` is the one the record was made from (constant-time comparison)."""
    digest = base64.b64decode(record["hash"])
    derived = _derive(password, base64.b64decode(record["salt"]), record["n"], record["r"],
                      record["p"], record["dklen"])
    return hmac.compare_digest(derived, digest)


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of the file, which changes whenever web-password writes it; None
    when there is none."""
    try:
        info = os.stat(path)
    except OSError:       # absent or unreadable: as good as no password (logins fail closed)
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def load_record(path: Path) -> dict[str, Any] | None:
    """The password record in ``path``; None when no password is set; PasswordError when the file
    is a link, not a regular file, open to other users, owned by a stranger or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        if os.path.islink(path):
            raise PasswordError(f"{path} is a symbolic link, which the dashboard never follows: "
                                f"remove it and set the password again: {CLI}") from err
        raise PasswordError(f"cannot read {path}: {err.strerror}") from err
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PasswordError(f"{path} is not a regular file: remove it and run {CLI}")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise PasswordError(f"{path} is open to other users (mode "
                                f"{stat.S_IMODE(info.st_mode):04o}): chmod 600 {path}")
        owners = {os.geteuid(), 0, os.stat(path.parent).st_uid}
        if info.st_uid not in owners:
            raise PasswordError(f"{path} belongs to user id {info.st_uid}, not to the agent's "
                                f"user: chown it to that user, or set the password again: {CLI}")
        raw = handle.read(FILE_MAX_BYTES + 1)
    if len(raw) > FILE_MAX_BYTES:
        raise PasswordError(f"{path} is too large to be a password file; set it again: {CLI}")
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PasswordError(f"{path} is not a password file written by web-password ({err}); "
                            f"set it again: {CLI}") from err
    return check_record(record, path)


def write_record(path: Path, record: Mapping[str, Any]) -> None:
    """Write the record to ``path`` atomically (a 0600 temporary file, fsynced, renamed over the
    old one), so a crash leaves the old password or the new one, never half of one."""
    folder = path.parent
    tmp = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write((json.dumps(record, indent=1) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)


def _first_line(stream: BinaryIO) -> str:
    raw = stream.read(MAX_BYTES + 2)
    line = raw.split(b"\n", 1)[0].removesuffix(b"\r")
    if len(line) > MAX_BYTES:
        raise UsageError(f"the password is longer than {MAX_BYTES} bytes")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError("the password is not UTF-8 text") from err


def read_new_password(stdin: TextIO,
                      ask: Callable[[str], str] = getpass.getpass) -> str:
    """The new password from standard input: on a terminal asked twice without echo, else the
    first line; UsageError when it is empty, shorter than MIN_LENGTH, or the two entries differ."""
    if stdin.isatty():
        password = ask("Dashboard password: ")
        if password and password != ask("The same again: "):
            raise UsageError("the two entries differ; nothing was changed")
    else:
        password = _first_line(stdin.buffer)
    if not password:
        raise UsageError(f"the password is empty; give one on standard input, e.g. {CLI} "
                         "(it asks), or a password manager's output piped into it")
    if len(password) < MIN_LENGTH:
        raise UsageError(f"the password is shorter than {MIN_LENGTH} characters")
    if len(_normal(password)) > MAX_BYTES:
        raise UsageError(f"the password is longer than {MAX_BYTES} bytes")
    return password


def command(args: argparse.Namespace, settings: Settings) -> int:
    """`web-password`: set the dashboard's password from standard input."""
    path = password_path(settings)
    try:
        password = read_new_password(sys.stdin)
    except UsageError as err:
        print(f"web-password: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (EOFError, KeyboardInterrupt):
        print("web-password: nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings.DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_record(path, make_record(password))
    except OSError as err:
        print(f"web-password: cannot write {path}: {err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"dashboard password set in {path} (scrypt, n={N}, r={R}, p={P}); the dashboard uses it "
          "from its next login, and every session open before it has ended")
    return EXIT_OK
