"""Prompt size against log volume: estimated tokens for 100 to 100,000 new log lines (flat)."""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from analysis.prompt import build_prompt
from foundation.model import Finding, Severity

VOLUMES = (100, 1_000, 10_000, 100_000)
BUDGET = 3000
RESULTS = Path(__file__).resolve().parent / "results" / "prompt_size.json"
EVIDENCE_PER_FINDING = 20  # what a detector keeps per finding (Finding.evidence is bounded)


def findings_for(lines: int) -> list[Finding]:
    """Findings a cycle with ``lines`` new lines produces: 80 % sshd failures from many
    addresses (10 per address), 20 % syslog messages never seen before (one per 5 lines)."""
    out: list[Finding] = []
    auth = lines * 8 // 10
    for n in range(auth // 10):
        addr = f"198.51.{n // 250 % 250}.{n % 250}"
        out.append(Finding("auth_log", "ssh_bruteforce", addr, Severity.MEDIUM,
                           f"10 failed logins from {addr}", labels={"address": addr,
                                                                    "user": f"admin{n % 7}"},
                           evidence=tuple(f"Nov 23 01:{k:02d}:00 host sshd[{900 + n}]: Failed "
                                          f"password for admin{n % 7} from {addr} port "
                                          f"{40000 + k} ssh2" for k in range(10))))
    for n in range((lines - auth) // 5):
        out.append(Finding("syslog", "novel_log_message", f"tpl{n}", Severity.LOW,
                           f"new message template {n}", labels={"program": f"svc{n % 13}"},
                           evidence=tuple(f"Nov 23 01:00:{k:02d} host svc{n % 13}[42]: worker {n} "
                                          f"state {k} unexpected" for k in range(5))))
    return out


def measure(lines: int) -> dict[str, float]:
    """Build the prompt for one volume; its size, what was shown and cut, and the build time."""
    findings = findings_for(lines)
    t0 = time.perf_counter()
    prompt = build_prompt(findings, {}, budget_tokens=BUDGET, boundary=secrets.token_hex(16),
                          constraints=Path("CONSTRAINTS.md").read_text(encoding="utf-8"))
    elapsed = time.perf_counter() - t0
    return {"lines": lines, "findings": len(findings), "tokens": prompt.tokens,
            "chars": len(prompt.system) + len(prompt.user),
            "shown_findings": len(prompt.shown_ids), "cut": dict(prompt.cut),
            "build_ms": round(elapsed * 1000, 1)}


def main() -> None:
    """Print the table and ratios; write bench/results/prompt_size.json."""
    rows = [measure(n) for n in VOLUMES]
    ref = rows[0]["tokens"]
    print(f"prompt budget {BUDGET} estimated tokens; reference: {VOLUMES[0]} lines")
    print(f"{'lines':>8} {'findings':>9} {'shown':>6} {'tokens':>7} {'x ref':>6} {'build ms':>9}")
    for r in rows:
        r["ratio_to_reference"] = round(r["tokens"] / ref, 3)
        print(f"{r['lines']:>8} {r['findings']:>9} {r['shown_findings']:>6} {r['tokens']:>7} "
              f"{r['ratio_to_reference']:>6.2f} {r['build_ms']:>9.1f}")
    big, small = rows[-1], rows[1]
    print(f"100,000 lines / 1,000 lines: {big['tokens'] / small['tokens']:.3f} x tokens")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"budget_tokens": BUDGET, "reference_lines": VOLUMES[0],
                                   "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
