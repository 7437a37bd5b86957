"""The foundation's error types, in their own module so that every foundation module can raise them."""
from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing, unknown or invalid, or a file that steers the agent is unsafe; the
    message names it."""
