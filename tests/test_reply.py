"""The reply parser: strict validation, recovery from fences and prose, and no input makes it raise."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.reply import MAX_REASON_CHARS, ReplyError, parse_reply, validate
from foundation.model import Severity

IDS = ("0123456789abcdef", "fedcba9876543210")


def _answer(**overrides: object) -> dict:
    doc = {"severity": "medium", "reason": "two findings, one serious",
           "findings": [{"id": IDS[0], "severity": "high", "reason": "service down"},
                        {"id": IDS[1], "severity": "low", "reason": "noise"}]}
    doc.update(overrides)
    return doc


def test_valid_answer_is_parsed() -> None:
    parsed = parse_reply(json.dumps(_answer()), IDS)
    assert parsed.severity is Severity.MEDIUM
    assert parsed.findings[IDS[0]] == (Severity.HIGH, "service down")
    assert parsed.findings[IDS[1]][0] is Severity.LOW


@pytest.mark.parametrize("wrap", [
    "```json\n{}\n```", "```\n{}\n```", "Here is my verdict:\n{}\nThanks.",
    "Sure! ```json {} ``` hope it helps", "{{not json}} then {}",
])
def test_json_is_recovered_from_fences_and_prose(wrap: str) -> None:
    parsed = parse_reply(wrap.replace("{}", json.dumps(_answer())), IDS)
    assert parsed.severity is Severity.MEDIUM


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   \n\t", "empty"), ("no json at all", "no JSON object"),
    ('{"severity": "medium", "reason": "cut', "no JSON object"),
    (json.dumps(_answer(severity="critical")), "not one of"),
    (json.dumps(_answer(severity="HIGH")), "not one of"),
    (json.dumps(_answer(severity=3)), "not one of"),
    (json.dumps(_answer(reason=None)), "reason must be a string"),
    (json.dumps(_answer(reason="x" * (MAX_REASON_CHARS + 1))), "longer than"),
    (json.dumps(_answer(findings={"a": 1})), "findings must be a list"),
    (json.dumps({**_answer(), "confidence": 0.9}), "unexpected field"),
    (json.dumps({"severity": "low", "reason": "r"}), "missing field"),
    (json.dumps(_answer(findings=[{"id": IDS[0], "severity": "low"}])), "missing field"),
    (json.dumps(_answer(findings=[{"id": IDS[0], "severity": "low", "reason": "r", "x": 1}])),
     "unexpected field"),
    (json.dumps(_answer(findings=[{"id": IDS[0], "severity": "low", "reason": "a"},
                                  {"id": IDS[0], "severity": "high", "reason": "b"}])),
     "judged twice"),
    (json.dumps([1, 2]), "must be a JSON object"),
])
def test_invalid_answers_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ReplyError, match=message):
        parse_reply(text, IDS)


def test_unknown_ids_are_ignored_and_counted() -> None:
    doc = _answer(findings=[{"id": "deadbeefdeadbeef", "severity": "none", "reason": "x"},
                            {"id": IDS[0], "severity": "high", "reason": "y"}])
    parsed = validate(doc, IDS)
    assert set(parsed.findings) == {IDS[0]}
    assert parsed.ignored_ids == 1


def test_reasons_are_neutralised() -> None:
    doc = _answer(reason="ping @everyone and <@123456> \x1b[31m now")
    parsed = validate(doc, IDS)
    assert "@everyone" not in parsed.reason and "<@123456>" not in parsed.reason
    assert "\x1b" not in parsed.reason


def test_non_text_is_an_error_not_a_crash() -> None:
    with pytest.raises(ReplyError):
        parse_reply(None, IDS)
    with pytest.raises(ReplyError):
        parse_reply("[" * 100_000, IDS)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from(["high", "low", "none", "medium", IDS[0], "severity", "reason"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["severity", "reason", "findings", "id", "x"]) | st.text(
        max_size=5), children, max_size=5), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), _json_values.map(json.dumps),
                 st.tuples(st.text(max_size=30), _json_values.map(json.dumps),
                           st.text(max_size=30)).map("```".join)))
def test_no_input_makes_the_parser_raise_anything_but_reply_error(text: str) -> None:
    try:
        parsed = parse_reply(text, IDS)
    except ReplyError as err:
        assert str(err)
    else:
        assert parsed.severity in Severity
        assert set(parsed.findings) <= set(IDS)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["none", "low", "medium", "high"]), st.text(max_size=50),
       st.text(max_size=20), st.text(max_size=20))
def test_any_valid_verdict_survives_any_wrapping(severity: str, reason: str, before: str,
                                                 after: str) -> None:
    doc = {"severity": severity, "reason": reason, "findings": []}
    before, after = (t.replace("{", "").replace("`", "") for t in (before, after))
    text = f"{before}\n```json\n{json.dumps(doc)}\n```\n{after}"
    assert parse_reply(text, IDS).severity is Severity(severity)
