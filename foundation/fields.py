"""Frozen records of validated fields, for the settings: pydantic's lax rules and error messages
for the types they use (bool, int, float, str, Path, SecretStr, Literal, tuples), without pydantic.

pydantic and what it imports held ~12 MB of the agent's steady memory (issue 20) for a check made
once at start-up. What is kept of it: the same conversions (``"30"`` is an int, ``"yes"`` a bool,
a list a tuple, strings stripped of white space), the same messages ("Input should be greater than
or equal to 10"), every error of every field at once, in field order, and checks that see the
fields validated above them.
"""
from __future__ import annotations

import collections
import math
import os
import re
from collections.abc import Callable, KeysView, Mapping, ValuesView
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin, get_type_hints

from foundation.secret import SecretStr

MISSING: Any = object()


class Invalid(ValueError):
    """Settings that do not validate: every error as (setting, message, input), in field order;
    the input is MISSING where it must not or cannot be shown."""

    def __init__(self, errors: list[tuple[str, str, Any]]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message, _ in errors))
        self.errors = errors


@dataclass(frozen=True)
class Rule:
    """What a type cannot say about one setting: bounds, a minimum length, a default."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    default: Any = MISSING


def rule(**limits: Any) -> Any:
    """A setting's bounds (``ge``, ``gt``, ``le``, ``lt``), ``min_length`` or ``default``."""
    return Rule(**limits)


@dataclass(frozen=True)
class FieldSpec:
    """One setting: its type, its rule and its checks (the functions marked with ``check``)."""

    name: str
    annotation: Any
    rule: Rule
    checks: tuple[Callable[..., Any], ...] = ()
    before: tuple[Callable[..., Any], ...] = ()


def check(*names: str, before: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """Mark a function ``(value, validated)`` as a check of the named settings, run in the order
    written after the value has its type (``before``: on the raw value, before its type is
    checked); ``validated`` holds the settings above it that are valid. ValueError: invalid."""
    def mark(fn: Callable[..., Any]) -> Any:
        fn.__checks__ = (names, before)  # type: ignore[attr-defined]
        return staticmethod(fn)
    return mark


class _Wrong(Exception):
    """A value that does not have its setting's type: the message and the input it is about."""

    def __init__(self, message: str, value: Any) -> None:
        super().__init__(message)
        self.message, self.value = message, value


_BOOL_WORDS = {"0": False, "off": False, "f": False, "false": False, "n": False, "no": False,
               "1": True, "on": True, "t": True, "true": True, "y": True, "yes": True}
_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_ASCII_NUMBER = re.compile(r"[\x00-\x7f]*")
# what pydantic strips (Unicode White_Space; str.strip() would also take \x1c to \x1f)
_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
          "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_INT64 = 2**63


def _text(value: Any) -> str | None:
    """A str (bytes decoded) or None."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        if isinstance(value, float) and not (value.is_integer() and -_INT64 <= value < _INT64):
            raise _Wrong("Input should be a valid boolean", value)
    text = value if isinstance(value, int | float) else _text(value)
    if isinstance(text, str) and text.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[text.lower()]
    if text is None:
        raise _Wrong("Input should be a valid boolean", value)
    raise _Wrong("Input should be a valid boolean, unable to interpret input", value)


def _as_int(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Wrong("Input should be a finite number", value)
        if not value.is_integer():
            raise _Wrong("Input should be a valid integer, got a number with a fractional part",
                         value)
        if not -_INT64 <= value < _INT64:
            raise _Wrong("Unable to parse input string as an integer, exceeded maximum size", value)
        return int(value)
    text = _text(value)
    if text is None:
        raise _Wrong("Input should be a valid integer", value)
    text = text.strip(_SPACE)
    if not _INT_TEXT.fullmatch(text):
        raise _Wrong("Input should be a valid integer, unable to parse string as an integer",
                     value)
    return int(text.partition(".")[0])


def _as_float(value: Any) -> float:
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise _Wrong("Input should be a valid number", value) from None
    text = _text(value)
    if text is None:
        raise _Wrong("Input should be a valid number", value)
    try:
        if not _ASCII_NUMBER.fullmatch(text.strip(_SPACE)):
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise _Wrong("Input should be a valid number, unable to parse string as a number",
                     value) from None


def _as_str(value: Any) -> str:
    text = _text(value)
    if text is None:
        raise _Wrong("Input should be a valid string", value)
    return text.strip(_SPACE)


def _as_path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value.strip(_SPACE))
    if isinstance(value, os.PathLike):
        return Path(value)
    raise _Wrong("Input is not a valid path for <class 'pathlib.Path'>", value)


def _as_secret(value: Any) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(_as_str(value))


_CONVERT: dict[Any, Callable[[Any], Any]] = {bool: _as_bool, int: _as_int, float: _as_float,
                                             str: _as_str, Path: _as_path, SecretStr: _as_secret}


def _as_type(annotation: Any, value: Any) -> tuple[Any, list[_Wrong]]:
    """``value`` converted to ``annotation`` (the types Settings uses), and what is wrong."""
    origin = get_origin(annotation)
    if origin is Literal:
        choices = get_args(annotation)
        if any(type(value) is type(c) and value == c for c in choices):
            return value, []
        said = [repr(c) for c in choices]
        words = said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}"
        return None, [_Wrong(f"Input should be {words}", value)]
    if origin is tuple:
        if isinstance(value, str | bytes | bytearray | Mapping) or not isinstance(
                value, list | tuple | set | frozenset | collections.abc.Iterator | KeysView
                | ValuesView | collections.deque):
            return None, [_Wrong("Input should be a valid tuple", value)]
        item_type = get_args(annotation)[0]
        items, wrong = [], []
        for item in value:
            if isinstance(item_type, type) and item_type not in _CONVERT:
                if isinstance(item, item_type):
                    items.append(item)
                else:
                    wrong.append(_Wrong(f"Input should be an instance of {item_type.__name__}",
                                        item))
                continue
            try:
                items.append(_CONVERT[item_type](item))
            except _Wrong as err:
                wrong.append(err)
        return tuple(items), wrong
    try:
        return _CONVERT[annotation](value), []
    except _Wrong as err:
        return None, [err]


def _within(spec: Rule, value: Any) -> str | None:
    """What ``value`` breaks of the rule's bounds and length, or None."""
    if spec.min_length is not None and len(value) < spec.min_length:
        return (f"String should have at least {spec.min_length} "
                f"character{'s' if spec.min_length != 1 else ''}")
    if spec.le is not None and not value <= spec.le:
        return f"Input should be less than or equal to {spec.le}"
    if spec.lt is not None and not value < spec.lt:
        return f"Input should be less than {spec.lt}"
    if spec.ge is not None and not value >= spec.ge:
        return f"Input should be greater than or equal to {spec.ge}"
    if spec.gt is not None and not value > spec.gt:
        return f"Input should be greater than {spec.gt}"
    return None


class Frozen:
    """A frozen record of validated fields: each class annotation is one, with its ``rule`` and
    its ``check`` functions."""

    model_fields: ClassVar[dict[str, FieldSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = get_type_hints(cls)
        checks: dict[str, list[Callable[..., Any]]] = {}
        befores: dict[str, list[Callable[..., Any]]] = {}
        for attr in list(vars(cls).values()):
            fn: Callable[..., Any] | None = getattr(attr, "__func__", None)
            if fn is None:
                continue
            names, before = getattr(fn, "__checks__", ((), False))
            for name in names:
                (befores if before else checks).setdefault(name, []).append(fn)
        fields = {}
        for name in cls.__annotations__:
            if name.startswith("_") or get_origin(hints[name]) is ClassVar:
                continue
            spec = vars(cls).get(name, Rule())
            if name in vars(cls):
                delattr(cls, name)   # the value lives on the instance
            fields[name] = FieldSpec(name, hints[name], spec if isinstance(spec, Rule)
                                     else Rule(default=spec), tuple(checks.get(name, ())),
                                     tuple(befores.get(name, ())))
        cls.model_fields = fields

    def __init__(self, **values: Any) -> None:
        errors: list[tuple[str, str, Any]] = []
        done: dict[str, Any] = {}
        for name, spec in self.model_fields.items():
            if name not in values:
                if spec.rule.default is MISSING:
                    errors.append((name, "Field required", MISSING))
                    continue
                done[name] = spec.rule.default
                continue
            raw = value = values[name]
            try:
                for fn in spec.before:
                    value = fn(value, done)
                value, wrong = _as_type(spec.annotation, value)
                if wrong:
                    errors += [(name, w.message, w.value) for w in wrong]
                    continue
                broken = _within(spec.rule, value)
                if broken:
                    errors.append((name, broken, raw))
                    continue
                for fn in spec.checks:
                    value = fn(value, done)
            except (ValueError, AssertionError) as err:
                errors.append((name, str(err), raw))
                continue
            done[name] = value
        unknown = [name for name in values if name not in self.model_fields]
        errors += [(name, "Extra inputs are not permitted", values[name]) for name in unknown]
        if errors:
            raise Invalid(errors)
        self.__dict__.update(done)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"Instance is frozen: {name} cannot be changed")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"Instance is frozen: {name} cannot be deleted")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(tuple(vars(self).values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def model_copy(self, update: Mapping[str, Any] | None = None) -> Any:
        """A copy with some values replaced, not validated again (as pydantic's model_copy)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(vars(self), **(update or {}))
        return copy
