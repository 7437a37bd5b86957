"""A string that never shows itself: in a repr, a log line or an error message it is asterisks."""
from __future__ import annotations

HIDDEN = "**********"


class SecretStr:
    """A secret setting (a webhook URL, a token): ``get_secret_value()`` is the only way to it."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def get_secret_value(self) -> str:
        """The secret itself, for the one place that sends it."""
        return self._value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a SecretStr cannot be changed")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __str__(self) -> str:
        return HIDDEN if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr('{self}')"
