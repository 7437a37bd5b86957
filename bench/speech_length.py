"""How long the speaker talks: every kind's announcement spoken by espeak-ng, measured by sox.

Run: ``.venv/bin/python -m bench.speech_length``. Each kind's announcement ("Alert on
homeserver." and its spoken sentence, rendered from the kind's example facts) and the worst case
of two findings plus "and N more" are spoken at espeak-ng's default rate into WAV files whose
length `soxi -D` reads. The reference, spoken in the same run: the sentence the agent used to say
for a CPU over its critical mark (issue 16 quotes it, 13.9 s), built from the finding's summary.
The bar is 8 s a kind. Writes bench/results/speech_length.json.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from alerts.home_assistant import announcement
from alerts.text import speakable
from analysis.detectors import all_kinds, told

RESULTS = Path(__file__).resolve().parent / "results" / "speech_length.json"
BAR_S = 8.0
HOST = "homeserver"
# the finding's summary as detect_sensors writes it for a CPU over its marks; before issue 16 the
# speaker said "Alert on HOST: 1 high finding." and this summary through speakable(), cut at 200
SUMMARY = ("coretemp-isa-0000/Package id 0 is 101 °C: at or over its critical mark 100 °C (chip); "
           "at or over its high mark 80 °C (chip)")


def before(host: str) -> str:
    """The sentence the agent said for that finding before issue 16 (its old announcement)."""
    return speakable(f"Alert on {host}: 1 high finding. {SUMMARY[:1].upper()}{SUMMARY[1:]}.", 200)


def seconds(text: str, folder: Path) -> float:
    """The length of ``text`` spoken by espeak-ng at its default rate."""
    wav = folder / "said.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True,
                   timeout=60)
    out = subprocess.run(["soxi", "-D", str(wav)], check=True, capture_output=True, text=True,
                         timeout=60)
    return float(out.stdout)


def main() -> None:
    """Print each kind's length, the longest, the two-finding worst case and the reference."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for spec in all_kinds():
            item = {"kind": spec.kind, "severity": "high", **told(spec.kind, spec.example, {})}
            said = announcement({"host": HOST, "items": [item]})
            rows.append((spec.kind, seconds(said, folder), said))
        longest = sorted(rows, key=lambda r: -r[1])
        pair = [{"kind": k, "severity": "high", **told(k, s.example, {})}
                for k, s in ((r[0], next(x for x in all_kinds() if x.kind == r[0]))
                             for r in longest[:2])]
        worst_two = announcement({"host": HOST, "items": [*pair, *pair]})
        two_s = seconds(worst_two, folder)
        before_s = seconds(before(HOST), folder)
    for kind, secs, said in rows:
        print(f"{secs:5.2f} s  {kind:24} {said}")
    top = longest[0]
    print(f"longest kind: {top[0]} {top[1]:.2f} s, bar {BAR_S:g} s: "
          f"{'within' if top[1] <= BAR_S else 'OVER'} the bar")
    print(f"two longest kinds and 'and 2 more': {two_s:.2f} s")
    print(f"reference (the old CPU sentence) {before_s:.2f} s; longest kind / reference ratio "
          f"{top[1] / before_s:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "kinds": {kind: round(secs, 2) for kind, secs, _ in rows},
        "longest": {"kind": top[0], "seconds": round(top[1], 2)}, "bar_s": BAR_S,
        "two_longest_and_more_s": round(two_s, 2), "reference_before_s": round(before_s, 2),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(RESULTS.parent.parent.parent)}")


if __name__ == "__main__":
    main()
