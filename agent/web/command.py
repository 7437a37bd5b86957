"""`web` and `web-password`: the dashboard's two commands (agent/cli.py dispatches here).

`web` refuses (exit 2) to listen on an address other machines can reach while no password is
set; the web stack (Starlette, Jinja2, uvicorn) is imported only after that check, and only by
this command: the agent's own start never loads it.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from agent.web import password
from foundation.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class BindRefused(Exception):
    """A reachable WEB_BIND without a password (exit 2); the message names the setting and fix."""


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> bool:
    """Whether a password is set; BindRefused when WEB_BIND is reachable from other machines and
    none is (or the file is unsafe: then its fix is named too)."""
    path = password.password_path(settings)
    try:
        is_set = password.load_record(path) is not None
        problem = ""
    except password.PasswordError as err:
        is_set, problem = False, f" ({err})"
    if not is_set and not is_loopback(settings.WEB_BIND):
        raise BindRefused(
            f"WEB_BIND: {settings.WEB_BIND} is reachable from other machines and no dashboard "
            f"password is set{problem}. Fix: set one with `{password.CLI}` (it reads it from "
            "standard input), or keep WEB_BIND = \"127.0.0.1\"")
    return is_set


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run `web` (serve the dashboard until SIGTERM or SIGINT) or `web-password`."""
    if args.command == "web-password":
        return password.command(args, settings)
    try:
        is_set = check_bind(settings)
    except BindRefused as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if not is_set:
        log.warning("dashboard: no password is set, so nobody can log in yet: set one with `%s`",
                    password.CLI)
    # the web stack, loaded by this command only (a long-running agent never needs it)
    from agent.web import server  # noqa: PLC0415

    return server.serve(settings)
