"""Parse and strictly validate the LLM's verdict; recover JSON wrapped in code fences or prose."""
from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.prompt import sanitise
from foundation.model import Severity

MAX_REASON_CHARS = 400        # longer reasons are rejected (a model rambling is not a verdict)
MAX_ID_CHARS = 64
MAX_FINDINGS = 500
MAX_REPLY_CHARS = 200_000     # beyond this the answer is not parsed at all
MAX_CANDIDATES = 20           # JSON objects tried inside prose
MAX_STARTS = 1000             # "{" tried at most: each failed try costs O(offset) (json's message)

SEVERITIES = [s.value for s in Severity]

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "severity": {"type": "string", "enum": SEVERITIES},
        "reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "maxLength": MAX_ID_CHARS},
                    "severity": {"type": "string", "enum": SEVERITIES},
                    "reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
                },
                "required": ["id", "severity", "reason"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["severity", "reason", "findings"],
    "additionalProperties": False,
}

_TOP_KEYS = frozenset(VERDICT_SCHEMA["required"])
_ITEM_KEYS = frozenset(VERDICT_SCHEMA["properties"]["findings"]["items"]["required"])
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)


class ReplyError(Exception):
    """The answer is not a valid verdict; the message says what is wrong."""


@dataclass(frozen=True)
class ParsedReply:
    """A validated answer: overall severity and reason, and per known finding id."""

    severity: Severity
    reason: str
    findings: Mapping[str, tuple[Severity, str]]
    ignored_ids: int = 0     # ids the answer named that are not findings of this cycle


def parse_reply(text: object, known_ids: Collection[str]) -> ParsedReply:
    """The validated verdict in ``text``; raises ReplyError (and nothing else) when there is none."""
    if not isinstance(text, str):
        raise ReplyError(f"the answer is not text ({type(text).__name__})")
    if not text.strip():
        raise ReplyError("the answer is empty")
    if len(text) > MAX_REPLY_CHARS:
        raise ReplyError(f"the answer is too long ({len(text)} characters)")
    first_error: ReplyError | None = None
    for candidate in _candidates(text):
        try:
            return validate(candidate, known_ids)
        except ReplyError as err:
            first_error = first_error or err
    if first_error is not None:
        raise first_error
    raise ReplyError("no JSON object found in the answer")


def _candidates(text: str) -> Iterator[Any]:
    """Decoded JSON values: the whole text, then fenced blocks, then objects embedded in prose."""
    seen = 0
    for chunk in [text, *(m.group(1) for m in _FENCE.finditer(text))]:
        try:
            yield json.loads(chunk)
            seen += 1
        except (ValueError, RecursionError):
            continue
    decoder = json.JSONDecoder()
    start = text.find("{")
    tries = 0
    while start != -1 and seen < MAX_CANDIDATES and tries < MAX_STARTS:
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        seen += 1
        yield value
        start = text.find("{", end)


def _severity(value: Any, where: str) -> Severity:
    if not isinstance(value, str) or value not in SEVERITIES:
        raise ReplyError(f"{where}: {_show(value)} is not one of {', '.join(SEVERITIES)}")
    return Severity(value)


def _reason(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReplyError(f"{where}: the reason must be a string, not {type(value).__name__}")
    if len(value) > MAX_REASON_CHARS:
        raise ReplyError(f"{where}: the reason is longer than {MAX_REASON_CHARS} characters")
    return sanitise(value, MAX_REASON_CHARS)


def _keys(obj: Any, expected: frozenset[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ReplyError(f"{where} must be a JSON object, not {type(obj).__name__}")
    missing = sorted(expected - obj.keys())
    extra = sorted(str(k) for k in obj.keys() - expected)
    if missing:
        raise ReplyError(f"{where}: missing field(s) {', '.join(missing)}")
    if extra:
        raise ReplyError(f"{where}: unexpected field(s) {_show(', '.join(extra))}")
    return obj


def validate(obj: Any, known_ids: Collection[str]) -> ParsedReply:
    """Check a decoded answer against the verdict schema; ids not in ``known_ids`` are ignored."""
    top = _keys(obj, _TOP_KEYS, "the answer")
    severity = _severity(top["severity"], "severity")
    reason = _reason(top["reason"], "reason")
    items = top["findings"]
    if not isinstance(items, list):
        raise ReplyError("findings must be a list")
    if len(items) > MAX_FINDINGS:
        raise ReplyError(f"findings: more than {MAX_FINDINGS} entries")
    per: dict[str, tuple[Severity, str]] = {}
    ignored = 0
    for n, raw in enumerate(items):
        item = _keys(raw, _ITEM_KEYS, f"findings[{n}]")
        fid = item["id"]
        if not isinstance(fid, str) or not fid or len(fid) > MAX_ID_CHARS:
            raise ReplyError(f"findings[{n}].id: {_show(fid)} is not a finding id")
        verdict = (_severity(item["severity"], f"findings[{n}].severity"),
                   _reason(item["reason"], f"findings[{n}].reason"))
        if fid not in known_ids:
            ignored += 1
            continue
        if fid in per:
            raise ReplyError(f"findings[{n}].id: {fid} is judged twice")
        per[fid] = verdict
    return ParsedReply(severity, reason, per, ignored)


def _show(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return sanitise(text, 60)
