"""The Ollama judge: a bounded prompt, a JSON-schema verdict, one firmer retry, then the rules.

Warm-up: a client timeout aborts a cold model load (and the next call is cold again), so the model
is loaded by a background thread (``/api/chat`` with no messages) under the generous
``OLLAMA_WARMUP_TIMEOUT_SECONDS``. A cycle waits for it at most ``OLLAMA_TIMEOUT_SECONDS``; while
the model is still loading the rules decide. A verdict request that times out marks the model cold,
and so does an idle spell longer than ``OLLAMA_KEEP_ALIVE``, so the next cycle warms it again.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.detectors import all_kinds
from analysis.known_issues import KnownIssues, load_known_issues
from analysis.prompt import REMINDER, Prompt, build_prompt, sanitise, summary_messages
from analysis.reply import VERDICT_SCHEMA, ParsedReply, ReplyError, parse_reply
from analysis.rules import rules_verdict
from collectors.ollama_health import REFUSED
from foundation import trust
from foundation.context import DetectContext
from foundation.model import Finding, FindingVerdict, Verdict, max_severity
from foundation.redact import redact
from foundation.settings import ConfigError, Settings

if TYPE_CHECKING:   # the client (ollama, httpx: some 35 MB) loads when a verdict is asked
    import ollama

log = logging.getLogger(__name__)

CACHE_SIZE = 64
MIN_REQUEST_S = 1.0        # a retry needs this much time left (or half the timeout)
MAX_CONSTRAINTS_BYTES = 64 * 1024
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

ClientFactory = Callable[[float], Any]


class OllamaFailure(Exception):
    """Ollama could not be asked (down, model missing, server error, timeout)."""


def keep_alive_seconds(value: str) -> float | None:
    """OLLAMA_KEEP_ALIVE in seconds (Go duration or number); None when forever or unparsed."""
    match = _DURATION.fullmatch(str(value).strip())
    if not match:
        return None
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return seconds if seconds > 0 else 0.0


def load_constraints(path: Path, relaxed: bool = False) -> str:
    """CONSTRAINTS.md as text ('' when absent); ConfigError when unsafe, unreadable or too large.

    It is guidance the LLM follows, so it is read only when trust.read_trusted finds that no one
    but root or the agent's user can write it (``relaxed``: ALLOW_UNSAFE_FILES).
    """
    try:
        data = trust.read_trusted(path, "CONSTRAINTS_PATH", relaxed=relaxed,
                                  max_bytes=MAX_CONSTRAINTS_BYTES)
        if len(data) > MAX_CONSTRAINTS_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONSTRAINTS_BYTES} bytes; the prompt "
                              "only has room for a page of guidance")
        return data.decode("utf-8")
    except FileNotFoundError:
        log.info("no operator guidance at %s", path)
        return ""
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err


class _WarmUp:
    """Loads the model once in a background thread; says whether it is warm."""

    def __init__(self, run: Callable[[], None]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.warm = False
        self.error: str | None = None

    def start(self) -> None:
        """Start loading unless warm or already loading."""
        with self._lock:
            if self.warm or (self._thread is not None and self._thread.is_alive()):
                return
            self._done.clear()
            self.error = None
            self._thread = threading.Thread(target=self._target, daemon=True, name="ollama-warmup")
            self._thread.start()

    def _target(self) -> None:
        t0 = time.monotonic()
        try:
            self._run()
            self.warm = True
            log.info("Ollama model loaded in %.1f s", time.monotonic() - t0)
        except OllamaFailure as err:
            self.error = str(err)
            # DEBUG: the agent logs Ollama going down once, and coming back (agent/dependencies.py)
            log.debug("Ollama warm-up failed: %s", err)
        finally:
            self._done.set()

    def wait(self, timeout_s: float) -> bool:
        """True once warm; waits at most ``timeout_s`` for a load in progress."""
        self._done.wait(max(0.0, timeout_s))
        return self.warm

    def cool(self) -> None:
        """The model is probably unloaded: warm it again next time."""
        self.warm = False


class OllamaJudge:
    """Asks Ollama for a verdict; the rules decide whenever it cannot answer well in time."""

    def __init__(self, settings: Settings, client_factory: ClientFactory | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 known: KnownIssues | None = None, constraints: str | None = None) -> None:
        self.settings = settings
        self.model = settings.OLLAMA_MODEL
        relaxed = settings.ALLOW_UNSAFE_FILES
        self.known = (known if known is not None
                      else load_known_issues(settings.KNOWN_ISSUES_PATH, relaxed=relaxed))
        self.constraints = (constraints if constraints is not None
                            else load_constraints(settings.CONSTRAINTS_PATH, relaxed))
        self._factory = client_factory or self._client
        self._clock = clock
        self._cache: dict[str, tuple[float, Verdict]] = {}
        self._last_contact: float | None = None
        self._warmup = _WarmUp(self._warm)
        # the outcome of the last call to Ollama since take_health: (answered, the error)
        self._health: tuple[bool, str | None] | None = None
        self._health_lock = threading.Lock()

    def _client(self, timeout_s: float) -> ollama.Client:
        import ollama  # noqa: PLC0415 - the client (~35 MB) only when a verdict is asked

        return ollama.Client(host=self.settings.OLLAMA_HOST, timeout=timeout_s)

    def take_health(self) -> tuple[bool, str | None] | None:
        """(answered, the error) of the last call to Ollama since the last take; None when none
        was made (no findings, an answer from the cache, the model still loading)."""
        with self._health_lock:
            found, self._health = self._health, None
        return found

    def _set_health(self, answered: bool, error: str | None = None) -> None:
        with self._health_lock:
            self._health = (answered, error)

    def steer(self, known: KnownIssues | None = None, constraints: str | None = None) -> None:
        """Use a new version of known_issues.json or CONSTRAINTS.md from the next verdict on."""
        if known is not None:
            self.known = known
        if constraints is not None:
            self.constraints = constraints
            self._cache.clear()  # an answer given under other guidance is not this question's

    def _warm(self) -> None:
        self._chat([], self.settings.OLLAMA_WARMUP_TIMEOUT_SECONDS)

    def _chat(self, messages: list[dict[str, str]], timeout_s: float) -> str:
        """One non-streaming /api/chat call; the assistant's text or OllamaFailure."""
        try:
            text = self._call(messages, timeout_s)
        except OllamaFailure as err:
            self._set_health(False, str(err))
            raise
        self._set_health(True)
        return text

    def _call(self, messages: list[dict[str, str]], timeout_s: float) -> str:
        import httpx  # noqa: PLC0415 - loaded with the client: only when a verdict is asked
        import ollama  # noqa: PLC0415 - as above

        try:
            response = self._factory(timeout_s).chat(
                model=self.model, messages=messages, format=VERDICT_SCHEMA if messages else None,
                options={"temperature": 0, "num_ctx": self.settings.OLLAMA_NUM_CTX},
                keep_alive=self.settings.OLLAMA_KEEP_ALIVE, stream=False)
        except ollama.ResponseError as err:
            hint = f" (run: ollama pull {self.model})" if err.status_code == 404 else ""
            raise OllamaFailure(redact(f"Ollama answered {err.status_code}: {err.error}{hint}")
                                ) from err
        except httpx.TimeoutException as err:
            self._warmup.cool()
            raise OllamaFailure(f"no answer from Ollama within {timeout_s:.0f} s") from err
        except (httpx.HTTPError, ConnectionError, OSError) as err:
            raise OllamaFailure(redact(f"cannot reach Ollama at {self.settings.OLLAMA_HOST}: "
                                       f"{err}")) from err
        self._last_contact = self._clock()
        message = getattr(response, "message", None)
        return str(getattr(message, "content", "") or "")

    def judge(self, findings: Sequence[Finding], observations: Mapping[str, Any],
              ctx: DetectContext) -> Verdict:
        """The verdict for one cycle; never raises (the rules decide on any failure)."""
        if not findings and not self.settings.ALWAYS_ASK_LLM:
            return rules_verdict(findings)
        try:
            return self._judge(findings, observations, ctx)
        except Exception as err:  # noqa: BLE001 - the judge must never cost the cycle
            log.warning("judge failed, rules decide: %s", redact(f"{type(err).__name__}: {err}"))
            return rules_verdict(findings, note=redact(f"judge error: {type(err).__name__}"))

    def prompt(self, findings: Sequence[Finding], observations: Mapping[str, Any],
               ctx: DetectContext | None) -> Prompt:
        """The prompt for this cycle (a fresh random boundary each time)."""
        now = ctx.now if ctx is not None else time.time()
        try:
            titles = {k.kind: k.title for k in all_kinds()}
        except Exception:  # noqa: BLE001 - titles are a nicety; a broken detector costs only them
            titles = {}

        def baseline(f: Finding) -> Mapping[str, Any] | None:
            if ctx is None or not f.metric:
                return None
            found = ctx.baseline(f.metric)
            return found.as_json() if found is not None else None

        return build_prompt(findings, observations, budget_tokens=self._budget(),
                            boundary=secrets.token_hex(16), constraints=self.constraints,
                            known=self.known.context(findings, now), baseline=baseline,
                            titles=titles)

    def _budget(self) -> int:
        """PROMPT_TOKEN_BUDGET, kept inside num_ctx with room for the answer (Ollama would
        otherwise drop the front of the prompt, the instructions, silently)."""
        return min(self.settings.PROMPT_TOKEN_BUDGET, self.settings.OLLAMA_NUM_CTX - 1024)

    def _judge(self, findings: Sequence[Finding], observations: Mapping[str, Any],
               ctx: DetectContext) -> Verdict:
        refused = _refused(observations)
        if refused is not None:   # asking now would only meet the same refusal
            self._set_health(False, refused)
            return rules_verdict(findings, note=f"LLM not asked: {refused}")
        start = self._clock()
        deadline = start + 2 * self.settings.OLLAMA_TIMEOUT_SECONDS
        prompt = self.prompt(findings, observations, ctx)
        key = hashlib.sha256(f"{self.model}\x00{prompt.key}".encode()).hexdigest()
        cached = self._cached(key, start)
        if cached is not None:
            return cached
        idle = keep_alive_seconds(self.settings.OLLAMA_KEEP_ALIVE)
        if idle is not None and self._last_contact is not None and start - self._last_contact > idle:
            self._warmup.cool()
        self._warmup.start()
        if not self._warmup.wait(min(self.settings.OLLAMA_TIMEOUT_SECONDS, deadline - start)):
            why = self._warmup.error or "the model is still loading (warm-up in progress)"
            return rules_verdict(findings, note=f"LLM not asked: {why}")
        messages = prompt.messages()
        errors: list[str] = []
        timeout = self.settings.OLLAMA_TIMEOUT_SECONDS
        for attempt in range(2):
            left = deadline - self._clock()
            if attempt and left < min(MIN_REQUEST_S, timeout / 2):
                errors.append("no time left for a retry")
                break
            try:
                text = self._chat(messages, timeout if attempt == 0 else min(timeout, left))
            except OllamaFailure as err:
                return rules_verdict(findings, note=f"LLM failed: {err}")
            try:
                parsed = parse_reply(text, prompt.shown_ids)
            except ReplyError as err:
                errors.append(str(err))
                log.info("LLM answer rejected (attempt %d): %s", attempt + 1, err)
                messages = [*prompt.messages(),
                            {"role": "assistant", "content": sanitise(text, 500)},
                            {"role": "user", "content": REMINDER.format(error=err)}]
                continue
            verdict = self._verdict(findings, parsed, prompt)
            self._remember(key, verdict)
            return verdict
        return rules_verdict(findings, note="LLM answer invalid: " + "; then ".join(errors))

    def _verdict(self, findings: Sequence[Finding], parsed: ParsedReply, prompt: Prompt) -> Verdict:
        per: dict[str, FindingVerdict] = {}
        for f in findings:
            judged = parsed.findings.get(f.fingerprint)
            if judged is None:
                why = "not shown to the LLM (budget)" if f.fingerprint not in prompt.shown_ids \
                    else "not judged by the LLM"
                per[f.fingerprint] = FindingVerdict(f.effective_rule_severity,
                                                    f"rule severity ({why})")
            else:
                severity, reason = judged
                per[f.fingerprint] = FindingVerdict(max_severity(severity, f.floor), reason)
        overall = max_severity(parsed.severity, *(v.severity for v in per.values()))
        note = f"{parsed.ignored_ids} unknown finding id(s) ignored" if parsed.ignored_ids else None
        return Verdict(severity=overall, reason=parsed.reason or "no reason given", by="llm",
                       model=self.model, per_finding=per, note=note)

    def _cached(self, key: str, now: float) -> Verdict | None:
        found = self._cache.get(key)
        if found is None:
            return None
        at, verdict = found
        if now - at > self.settings.LLM_CACHE_MINUTES * 60:
            del self._cache[key]
            return None
        return Verdict(verdict.severity, verdict.reason, verdict.by, verdict.model,
                       verdict.per_finding, note="answered from cache: same question "
                                                 f"{(now - at) / 60:.0f} min ago")

    def _remember(self, key: str, verdict: Verdict) -> None:
        if self.settings.LLM_CACHE_MINUTES <= 0:
            return
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(min(self._cache, key=lambda k: self._cache[k][0]))
        self._cache[key] = (self._clock(), verdict)


def _refused(observations: Mapping[str, Any]) -> str | None:
    """Why Ollama cannot be asked when this cycle's own health check of OLLAMA_HOST
    (collectors/llm_runtimes.py, moments before) found its connection refused; else None (a
    slow or partial answer there is no reason to skip the judge's longer timeout)."""
    seen = observations.get("llm_runtimes")
    health = seen.get("ollama") if isinstance(seen, Mapping) else None
    if not isinstance(health, Mapping) or health.get("reachable") is not False \
            or health.get("error") != REFUSED:
        return None
    return f"cannot reach Ollama at {health.get('host')}: {REFUSED} (this cycle's health check)"


SUMMARY_MAX_CHARS = 800


def summarise(settings: Settings, facts: str, client_factory: ClientFactory | None = None
              ) -> str | None:
    """A short recap summary written by the LLM, made inert for Discord; None when it fails."""
    import httpx  # noqa: PLC0415 - the client (~35 MB) only when a summary is asked
    import ollama  # noqa: PLC0415 - as above

    factory = client_factory or (lambda timeout: ollama.Client(host=settings.OLLAMA_HOST,
                                                               timeout=timeout))
    try:
        response = factory(settings.OLLAMA_TIMEOUT_SECONDS).chat(
            model=settings.OLLAMA_MODEL, messages=summary_messages(facts, secrets.token_hex(16)),
            options={"temperature": 0, "num_ctx": settings.OLLAMA_NUM_CTX},
            keep_alive=settings.OLLAMA_KEEP_ALIVE, stream=False)
    except (ollama.ResponseError, httpx.HTTPError, ConnectionError, OSError) as err:
        log.warning("no LLM summary for the recap: %s", redact(str(err)))
        return None
    text = str(getattr(getattr(response, "message", None), "content", "") or "")
    return sanitise(text, SUMMARY_MAX_CHARS) or None
