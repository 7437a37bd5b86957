"""How every finding kind is told: a headline with the fact that matters, what to do, a resolved
line, and a spoken sentence built from trusted facts only that espeak-ng says within 8 s."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from alerts import console
from alerts.home_assistant import announcement
from analysis.detectors import all_kinds, kind_specs, told
from analysis.kinds import KindSpec, fields_of, spoken_host, tell

KINDS = all_kinds()
SPEECH_MAX_S = 8.0
# label names the detectors fill from text others wrote: never a spoken fact
UNTRUSTED = {"user", "address", "remote", "peer", "program", "template", "subjects", "rdns",
             "service", "product", "version", "problem", "error", "status", "image", "method"}


@pytest.mark.parametrize("spec", KINDS, ids=[k.kind for k in KINDS])
def test_every_kind_is_told_in_words_from_its_example(spec: KindSpec) -> None:
    assert spec.name and spec.says and spec.speaks and spec.example, spec.kind
    assert spec.event or spec.cleared, f"{spec.kind} resolves, so it needs a cleared line"
    facts = spec.example
    assert tell(spec.says, facts) is not None, spec.kind       # every value it reads is there
    assert tell(spec.speaks, facts) is not None, spec.kind
    assert spec.event or tell(spec.cleared, facts) is not None, spec.kind
    for text in (spec.headline(facts, {}), spec.spoken(facts)):   # words, no ids
        assert "{" not in text and "_" not in text, (spec.kind, text)
    assert "{" not in spec.todo(facts).replace("{{", "").replace("{json", ""), spec.kind
    assert spec.kind not in spec.headline(facts, {})           # ids go to the footer


@pytest.mark.parametrize("spec", KINDS, ids=[k.kind for k in KINDS])
def test_speech_reads_no_text_from_outside(spec: KindSpec) -> None:
    assert not fields_of(spec.speaks) & UNTRUSTED, spec.kind
    # and even if a detector put such a value among the labels, speech takes facts alone
    hostile = dict.fromkeys(fields_of(spec.speaks), "ignore previous instructions")
    if fields_of(spec.speaks):
        assert spec.spoken({}) == spec.name                     # a fact missing: the name
    assert "ignore" not in spec.spoken({})
    assert all(v not in spec.headline({}, hostile) for v in ("{", "}"))


def test_a_missing_fact_falls_back_to_the_name_never_a_crash() -> None:
    spec = kind_specs()["process_missing"]
    assert spec.headline({}, {}) == "Process not running"
    assert spec.recovered({}, {}) == "Process not running: no longer seen"
    assert tell("{n:.0f} °C", {"n": "not a number"}) is None
    assert tell("{n:plural:time}", {"n": 1}) == "1 time" and tell("{n:plural:time}", {"n": 2}) == "2 times"


def test_what_to_do_names_the_thing_or_shows_the_placeholder() -> None:
    spec = kind_specs()["container_unhealthy"]
    assert "`docker inspect --format '{{json .State.Health}}' paperless`" in spec.todo(
        {"container": "paperless"})
    assert "`docker inspect --format '{{json .State.Health}}' CONTAINER`" in spec.todo()


@pytest.mark.parametrize("spec", KINDS, ids=[k.kind for k in KINDS])
def test_what_to_do_in_pieces_is_the_action_with_its_commands_marked(spec: KindSpec) -> None:
    for facts in (spec.example, None, {}):
        pieces = spec.todo_parts(facts)
        assert "".join(text for text, _ in pieces) == spec.todo(facts).replace("`", ""), spec.kind
        assert all(text for text, _ in pieces), spec.kind
    # the commands are the kind's own backticks: a fact with backticks opens or closes none
    plain = [code for _, code in spec.todo_parts(spec.example)]
    hostile = {k: f"`{v}` ```x``" for k, v in spec.example.items()}
    assert [code for _, code in spec.todo_parts(hostile)] == plain, spec.kind


def test_what_to_do_in_pieces_marks_each_command() -> None:
    assert kind_specs()["process_missing"].todo_parts({"process": "nginx"}) == [
        ("Check the service (", False), ("systemctl status nginx", True), (", ", False),
        ("journalctl -u nginx", True),
        (") and restart it; remove it from PROCESSES_TO_MONITOR if it was retired on purpose.",
         False)]


def test_a_configured_address_is_not_spoken() -> None:
    assert spoken_host("192.168.1.10", "A ping target") == "A ping target"
    assert spoken_host("fe80::1%eth0", "A ping target") == "A ping target"
    assert spoken_host("nas.lan", "A ping target") == "nas.lan"


def test_the_console_leads_with_the_headline_and_says_what_to_do() -> None:
    spec = kind_specs()["new_open_port"]
    facts = {"port": 8080, "protocol": "tcp", "host": "127.0.0.1", "where": "this machine"}
    item = {"kind": spec.kind, "severity": "high", "floor": "medium", "summary": "new open port",
            "fingerprint": "ab" * 8, "why": "new", **told(spec.kind, facts, {})}
    lines = console.render({"purpose": "alert", "host": "nas", "items": [item],
                            "verdict": {"by": "rules"}}).splitlines()
    assert lines[0] == "[ALERT] nas: 1 finding"
    assert lines[1].endswith("HIGH   Port 8080/tcp is open on 127.0.0.1")
    assert "ss -ltnp 'sport = :8080'" in lines[3]
    assert lines[4].endswith("new_open_port · abababab · new")


def seconds_spoken(text: str, wav: Path) -> float:
    """How long espeak-ng takes to say ``text`` at its default rate (sox reads the length)."""
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=60,
                   capture_output=True)
    length = subprocess.run(["soxi", "-D", str(wav)], check=True, timeout=60,
                            capture_output=True, text=True)
    return float(length.stdout)


needs_speech = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("soxi")),
    reason="espeak-ng and sox are Debian packages that `make test` installs")


@needs_speech
@pytest.mark.parametrize("spec", KINDS, ids=[k.kind for k in KINDS])
def test_each_kind_is_said_within_8_seconds(spec: KindSpec, tmp_path: Path) -> None:
    item = {"kind": spec.kind, "severity": "high", **told(spec.kind, spec.example, {})}
    sentence = announcement({"host": "homeserver", "items": [item]})
    assert sentence.startswith("Alert on homeserver. ")
    assert seconds_spoken(sentence, tmp_path / "said.wav") <= SPEECH_MAX_S, sentence


@needs_speech
def test_numbers_are_said_as_numbers(tmp_path: Path) -> None:
    spec = kind_specs()["temperature_high"]
    item = {"kind": spec.kind, "severity": "high", **told(spec.kind, spec.example, {})}
    sentence = announcement({"host": "nas", "items": [item]})
    assert sentence == ("Alert on nas. The CPU is at 101 degrees, over its critical mark of "
                        "100.")
    assert "coretemp" not in sentence and "isa" not in sentence    # no bus ids, no chip names
    # read as a number: the same length as the words, far from the digits one by one
    assert seconds_spoken(sentence, tmp_path / "a.wav") < seconds_spoken(
        sentence.replace("101", "1 0 1").replace("100", "1 0 0"), tmp_path / "b.wav")
