"""Credentials in a prompt (issue 19): which types a request body carries, never the values.

The detectors are Yelp's detect-secrets 1.5.0 plugins, used in memory: their compiled ``denylist``
regexes run over the text directly (no file scan, no baseline, no settings file, no verification
request: detect-secrets' ``analyze_line`` would consult its global settings and build a
PotentialSecret per hit, for nothing we use). Each hit then goes through the value filters that
``detect-secrets scan`` applies by default (sequential strings, UUIDs, ``{templated}``/``<templated>``
/``${templated}`` and ``$VAR`` values, values without a letter), and a JWT must decode
(JwtTokenDetector.is_formally_valid).

Used (formats of real credentials, each anchored on a fixed prefix or a key's shape): AWS access
key IDs (and secret keys in an ``aws...key = "..."`` assignment), Azure Storage account keys,
Basic Auth credentials in URLs (``scheme://user:password@host``), Discord bot tokens, GitHub and
GitLab tokens, JWTs, Mailchimp, NPM, OpenAI, private keys (PEM/OpenSSH/PGP/PuTTY headers), PyPI,
SendGrid, Slack, Square OAuth, Stripe, Telegram bot and Twilio keys, and IBM Cloud IAM, IBM COS
HMAC, SoftLayer, Cloudant and Artifactory credentials.

Left out, because in prompts they flag what is not a credential far more often than what is:
- Base64HighEntropyString and HexHighEntropyString: every pasted image (base64), hash, digest,
  build id and minified bundle is high-entropy text; prompts are full of them.
- KeywordDetector ("Secret Keyword"): any ``password = ...`` in code or configuration pasted for
  review, placeholders and variable names included.
- IPPublicDetector ("Public IP"): an address is not a credential, and networking questions are
  full of them.

Ours, for formats detect-secrets 1.5.0 lacks (EXTRA_RULES): the regexes of gitleaks' default
configuration (https://github.com/gitleaks/gitleaks, config/gitleaks.toml at commit b58d3f1 of
2026-07-22), with its keyword pre-check and entropy floor: ``anthropic-api-key`` and
``anthropic-admin-api-key``, ``gcp-api-key`` (Google API keys, Gemini's included),
``huggingface-access-token`` and ``huggingface-organization-api-token``, and ``openai-api-key``
for the project/service-account/admin keys whose characters after ``T3BlbkFJ`` include ``-`` or
``_``, which detect-secrets' OpenAIDetector misses.

The body is mostly JSON, whose string escapes can split a secret's text (``\\n`` inside a private
key block, ``\\/`` in a URL, ``\\u0041``): the first SCAN_BYTES of the body are scanned with the
JSON string escapes undone (a tolerant pass that also works on a body cut short) and, when that
changed anything, as sent too (without the assignment-shaped patterns, whose quotes the escapes
hide). A request sent compressed (Content-Encoding) is not decompressed here.

Cost: the plugins' regexes are run as detect-secrets runs them, but only where a necessary
condition of a match holds (see _HINTS and _keywords below), and JWT's and NPM's, which retry
quadratically, by finders that skip the retries: ~2 ms of CPU for a 16 KiB prompt of code on the
development machine, and linear time on pathological text (~0.5 µs a character at worst). A
test checks that these shortcuts find what the plain regexes find.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_not_alphanumeric_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

SCAN_BYTES = 256 * 1024     # of a body, at most this much is scanned

PLUGINS: tuple[RegexBasedDetector, ...] = (
    ArtifactoryDetector(), AWSKeyDetector(), AzureStorageKeyDetector(), BasicAuthDetector(),
    CloudantDetector(), DiscordBotTokenDetector(), GitHubTokenDetector(), GitLabTokenDetector(),
    IbmCloudIamDetector(), IbmCosHmacDetector(), JwtTokenDetector(), MailchimpDetector(),
    NpmDetector(), OpenAIDetector(), PrivateKeyDetector(), PypiTokenDetector(), SendGridDetector(),
    SlackDetector(), SoftlayerDetector(), SquareOAuthDetector(), StripeDetector(),
    TelegramBotTokenDetector(), TwilioKeyDetector(),
)


Hint = Callable[[str, str], bool]     # (text, folded text) -> may a match be there?
Finder = Callable[[re.Pattern[str], str], Iterator[re.Match[str]]]


@dataclass(frozen=True)
class _Pattern:
    """One detect-secrets regex, and what makes scanning it cheap without changing its result."""

    secret_type: str
    regex: re.Pattern[str]
    jwt: bool = False           # the value must decode as a JWT
    private_key: bool = False   # the secret is the key block the header opens
    hint: Hint | None = None    # a necessary condition for a match, checked first
    finder: Finder | None = None            # its matches, found faster than by finditer
    value: re.Pattern[str] | None = None    # an assignment pattern: its value's own regex


def _any_of(*needles: str) -> Hint:
    """Every match holds one of ``needles`` (lower-case literals): found in the folded text."""
    return lambda text, folded: any(needle in folded for needle in needles)


def _after_space_or(piece: str) -> Hint:
    """Every match holds ``piece`` (case as written) at the text's start or after what
    Artifactory's ``(?:\\s|=|:|"|^)`` takes (``\\s``: what str.isspace() takes, as in the regex
    engine)."""
    found = re.compile(piece)
    return lambda text, folded: any(
        m.start() == 0 or text[m.start() - 1].isspace() or text[m.start() - 1] in '=:"'
        for m in found.finditer(text))


def _jwt_finditer(regex: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """JwtTokenDetector's matches as its finditer gives them, in linear time. Plainly, its
    ``eyJ[A-Za-z0-9-_=]+\\.`` rescans the rest of a run after each ``eyJ`` in it (seconds on
    256 KiB of ``eyJeyJ...``); but every ``eyJ`` of one run of those characters meets the same
    ``.`` and the same continuation, so when the first fails the others do."""
    pos = 0
    while (at := text.find("eyJ", pos)) >= 0:
        m = regex.match(text, at)
        if m:
            yield m
            pos = max(m.end(), at + 1)
        else:
            run = _JWT_RUN.match(text, at)
            pos = max(run.end() if run else at, at + 1)


def _npm_finditer(regex: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """NpmDetector's matches as its finditer gives them, in linear time. Plainly, its
    ``//.+/:_authToken=`` runs to the line's end and back after each ``//`` (minutes on a line of
    ``////...``); but ``.+`` from a line's first ``//`` reaches every place a later one does, so
    when the first fails the line has no match."""
    pos = 0
    while (token := text.find("/:_authToken=", pos)) >= 0:
        line_end = text.find("\n", token)
        line_end = len(text) if line_end < 0 else line_end
        start = text.find("//", max(pos, text.rfind("\n", 0, token) + 1), line_end)
        m = regex.match(text, start) if start >= 0 else None
        if m:
            yield m
            pos = max(m.end(), start + 1)
        else:
            pos = line_end + 1


# Costs, and how they are cut without changing what is found (each a necessary condition):
# - patterns with a case-blind or alternated start, or none, run only when a literal every match
#   holds is there (_HINTS); those that start with a literal are left as they are (the regex
#   engine skips ahead to it). JWT's and NPM's get a finder that skips their quadratic retries.
# - the assignment patterns (RegexBasedDetector.build_assignment_regex: Cloudant, IBM Cloud IAM,
#   IBM COS HMAC, SoftLayer) cost ~100 ns a character (a look-behind and a case-blind alternation
#   tried everywhere) and backtrack cubically over a long run of spaces that leads nowhere. A
#   match is at most 29 characters of brackets, quotes and prefix (``ibm_cloud_iam_api``,
#   ``cos_hmac_secret_access_``), a keyword, then ``["']?\\]? *(?:=|:|:=|=>| +|::) *["']?``
#   (_BETWEEN), then the value (the plugin's own ``secret`` regex) at the first character that is
#   none of ``"'] =:>``. So each is tried only where _ASSIGNMENT finds a keyword whose
#   _BETWEEN and value both hold, at the few places its match could start.
_ASSIGNMENT_START = "(?:(?<=\\W)|(?<=^))"
_ASSIGNMENT = re.compile(r"(?:key|pwd|pw|password|pass|token)(?=[\"']?\]?[ =:])")
_AFTER_KEYWORD = re.compile(r"[\"'\] =:>]*")
_BETWEEN = re.compile(r"[\"']?\]?(?: *+(?:=|:|:=|=>|::) *+| ++)[\"']?")
_BEFORE = 29
_VALUES: dict[tuple[type[RegexBasedDetector], int], str] = {
    (CloudantDetector, 0): CloudantDetector.cl_pw, (CloudantDetector, 1): CloudantDetector.cl_api_key,
    (IbmCloudIamDetector, 0): IbmCloudIamDetector.secret,
    (IbmCosHmacDetector, 0): IbmCosHmacDetector.password, (SoftlayerDetector, 0): SoftlayerDetector.secret,
}
_HINTS: dict[tuple[type[RegexBasedDetector], int], Hint] = {
    (ArtifactoryDetector, 0): _after_space_or("AKC"),
    (ArtifactoryDetector, 1): _after_space_or("AP[0-9A-F]"),
    (AWSKeyDetector, 0): _any_of("a3t", "abia", "acca", "akia", "asia"),
    (AWSKeyDetector, 1): _any_of("aws"),
    (AzureStorageKeyDetector, 0): _any_of("accountkey="),
    (CloudantDetector, 0): _any_of("cl"), (CloudantDetector, 1): _any_of("cl"),
    (CloudantDetector, 2): _any_of(".cloudant.com"), (CloudantDetector, 3): _any_of(".cloudant.com"),
    (IbmCosHmacDetector, 0): _any_of("secret"),
    (MailchimpDetector, 0): _any_of("-us"),
    (NpmDetector, 0): _any_of("/:_authtoken="),
    (SlackDetector, 0): _any_of("xox"),
    (SlackDetector, 1): _any_of("hooks.slack.com/services/t"),
    (SoftlayerDetector, 0): _any_of("sl", "softlayer"), (SoftlayerDetector, 1): _any_of("softlayer"),
    (StripeDetector, 0): _any_of("k_live_"),
}
_FINDERS: dict[type[RegexBasedDetector], Finder] = {JwtTokenDetector: _jwt_finditer,
                                                    NpmDetector: _npm_finditer}


def _pattern(plugin: RegexBasedDetector, index: int, regex: re.Pattern[str]) -> _Pattern:
    key = (type(plugin), index)
    value = None
    if regex.pattern.startswith(_ASSIGNMENT_START):     # a KeyError here: a new one to look at
        value = re.compile(_VALUES[key], re.IGNORECASE)
    return _Pattern(plugin.secret_type, regex, isinstance(plugin, JwtTokenDetector),
                    isinstance(plugin, PrivateKeyDetector), _HINTS.get(key),
                    _FINDERS.get(type(plugin)), value)


_PATTERNS = tuple(_pattern(p, index, regex) for p in PLUGINS for index, regex in enumerate(p.denylist))
# The characters the regex engine's case-blind matching takes for an ASCII letter but str.lower()
# does not lower to it (U+0130 also lowers to two characters): replaced before lowering, so that
# the folded text keeps every position and holds every literal a case-blind match holds.
_FOLD_FIXES = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}


@dataclass(frozen=True)
class ExtraRule:
    """One of our own formats: gitleaks' rule ``rule_id``, run only when the lower-cased text holds
    ``keyword``; the secret (group 1) must reach gitleaks' Shannon ``entropy`` floor."""

    secret_type: str
    rule_id: str
    keyword: str
    pattern: re.Pattern[str]
    entropy: float = 0.0


# gitleaks' trailing context: a quote, backtick, space or ';', an escaped \n or \r, or the end
_END = r"""(?:[`'"\s;]|\\[nr]|$)"""
EXTRA_RULES: tuple[ExtraRule, ...] = (
    ExtraRule("Anthropic API Key", "anthropic-api-key", "sk-ant-api03",
              re.compile(r"\b(sk-ant-api03-[a-zA-Z0-9_\-]{93}AA)" + _END)),
    ExtraRule("Anthropic API Key", "anthropic-admin-api-key", "sk-ant-admin01",
              re.compile(r"\b(sk-ant-admin01-[a-zA-Z0-9_\-]{93}AA)" + _END)),
    ExtraRule("Google API Key", "gcp-api-key", "aiza",
              re.compile(r"\b(AIza[\w-]{35})" + _END), 4.0),
    ExtraRule("Hugging Face Token", "huggingface-access-token", "hf_",
              re.compile(r"\b(hf_(?i:[a-z]{34}))" + _END), 2.0),
    ExtraRule("Hugging Face Token", "huggingface-organization-api-token", "api_org_",
              re.compile(r"\b(api_org_(?i:[a-z]{34}))" + _END), 2.0),
    ExtraRule("OpenAI Token", "openai-api-key", "t3blbkfj",
              re.compile(r"\b(sk-(?:proj|svcacct|admin)-(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})"
                         r"T3BlbkFJ(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})\b"
                         r"|sk-[a-zA-Z0-9]{20}T3BlbkFJ[a-zA-Z0-9]{20})" + _END), 3.0),
)

# JSON string escapes, undone by a tolerant pass (a surrogate pair first, then the rest)
_ESCAPE = re.compile(r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
                     r"|\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# a private key block's end, so that redaction covers the key and not its header alone
_KEY_END = re.compile(r"-----END [A-Z0-9 ]{0,40}-----|Private-MAC: *[0-9a-fA-F]*")
_JWT_TAIL = re.compile(r"[A-Za-z0-9_\-.+/=]*")
_JWT_RUN = re.compile(r"[A-Za-z0-9\-_=]*")               # the class of JwtTokenDetector's first part
_EDGE = frozenset(" \t\r\n\"'=:")

Finding = tuple[str, int, int]      # (type, start, end) of a secret in the scanned text


def find_secrets(body: bytes) -> list[str]:
    """The types of secret in ``body`` (sorted, each once); empty when none was found."""
    raw, unescaped = _texts(body)
    found = {kind for kind, _, _ in _findings(unescaped, first_only=True)}
    if unescaped != raw:    # the assignment patterns need the quotes and lines the escapes hide
        found |= {kind for kind, _, _ in _findings(raw, first_only=True, assignments=False)}
    return sorted(found)


def redacted_sample(body: bytes, limit: int = 200) -> str:
    """The first ``limit`` characters of the body as text (UTF-8, JSON string escapes undone),
    every secret found replaced by ``<secret:TYPE>``."""
    if limit <= 0:
        return ""
    raw, text = _texts(body)
    spans = sorted(_findings(text, first_only=False), key=lambda f: (f[1], -f[2]))
    parts: list[str] = []
    pos = size = 0
    for kind, start, end in spans:
        if end <= pos:
            continue                          # inside a secret already replaced
        kept = text[pos:max(pos, start)] + (f"<secret:{kind}>" if start >= pos else "")
        parts.append(kept)
        size += len(kept)
        pos = end
        if size > limit:
            break
    parts.append(text[pos:])
    sample = "".join(parts)
    if raw != text:     # a secret only the escaped text showed: its value is replaced wherever seen
        for kind, start, end in _findings(raw, first_only=False, assignments=False):
            if end - start >= 4:
                sample = sample.replace(raw[start:end], f"<secret:{kind}>")
    return sample[:limit]


def _texts(body: bytes) -> tuple[str, str]:
    """The scanned text, as sent and with JSON string escapes undone."""
    raw = body[:SCAN_BYTES].decode("utf-8", "replace")
    return raw, (_ESCAPE.sub(_unescape_one, raw) if "\\" in raw else raw)


def _unescape_one(m: re.Match[str]) -> str:
    if m.group(1):
        high, low = int(m.group(1), 16), int(m.group(2), 16)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    if m.group(3):
        code = int(m.group(3), 16)
        return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)
    return _SIMPLE[m.group(4)]


def _fold(text: str) -> str:
    if any(chr(code) in text for code in _FOLD_FIXES):
        text = text.translate(_FOLD_FIXES)
    return text.lower()


def _findings(text: str, first_only: bool, assignments: bool = True) -> Iterator[Finding]:
    """Every secret in ``text``; with ``first_only``, the first of each type (all a type list
    needs); without ``assignments``, the assignment patterns are not run."""
    folded = _fold(text)
    keywords = _keywords(text, folded) if assignments else []
    done: set[str] = set()
    for pat in _PATTERNS:
        if (first_only and pat.secret_type in done) or (pat.hint and not pat.hint(text, folded)):
            continue
        if pat.value is not None:
            found: Iterator[re.Match[str]] = _assignment_matches(pat, pat.value, text, keywords)
        elif pat.finder is not None:
            found = pat.finder(pat.regex, text)
        else:
            found = pat.regex.finditer(text)
        for finding in _findings_of(pat, text, found):
            yield finding
            if first_only:
                done.add(pat.secret_type)
                break
    for rule in EXTRA_RULES:
        if rule.keyword not in folded:
            continue
        for m in rule.pattern.finditer(text):
            if rule.entropy and _entropy(m.group(1)) < rule.entropy:
                continue
            yield rule.secret_type, m.start(1), m.end(1)
            if first_only:
                break


def _keywords(text: str, folded: str) -> list[tuple[int, int, int]]:
    """(earliest start, keyword start, value start) of each place an assignment pattern's match
    could hold: a keyword followed by what _BETWEEN takes, within its line."""
    found = []
    line_start = line_end = 0
    for m in _ASSIGNMENT.finditer(folded):
        at = m.start()
        if at >= line_end:                              # a new line
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at)
            line_end = len(text) if line_end < 0 else line_end
        value = _AFTER_KEYWORD.match(folded, m.end())
        if value and _BETWEEN.fullmatch(folded, m.end(), value.end()):
            found.append((max(line_start, at - _BEFORE), at, value.end()))
    return found


def _assignment_matches(pat: _Pattern, value: re.Pattern[str], text: str,
                        keywords: list[tuple[int, int, int]]) -> Iterator[re.Match[str]]:
    """The pattern's matches at the places _keywords found, where its value holds."""
    last = 0
    for earliest, at, start in keywords:
        if at < last or not value.match(text, start):
            continue
        for pos in range(max(earliest, last), at + 1):
            m = pat.regex.match(text, pos)
            if m:
                yield m
                last = m.end()
                break


def _findings_of(pat: _Pattern, text: str, found: Iterator[re.Match[str]]) -> Iterator[Finding]:
    block: re.Match[str] | None = None      # the last key block's end found, reused by later headers
    for m in found:
        first, last = _secret_span(m)
        value = text[first:last]
        if _filtered(value) or (pat.jwt and not JwtTokenDetector.is_formally_valid(value)):
            continue
        if pat.jwt:                                   # and its signature
            tail = _JWT_TAIL.match(text, last)
            last = tail.end() if tail else last
        if pat.private_key:                           # the whole block, dashes included
            while first > 0 and text[first - 1] == "-":
                first -= 1
            if block is None or block.start() < last:
                block = _KEY_END.search(text, last)
                if block is None:                     # no end after this header, nor any later
                    yield pat.secret_type, first, len(text)
                    return
            last = block.end()
        yield pat.secret_type, first, last


def _secret_span(m: re.Match[str]) -> tuple[int, int]:
    """The span of the secret in a detect-secrets match: its first non-empty group (the plugins'
    assignment and URL patterns capture the value alone), else the whole match."""
    for group in range(1, m.re.groups + 1):
        if m.group(group):
            return m.span(group)
    start, end = m.span()
    while start < end and m.string[start] in _EDGE:       # the delimiters some patterns include
        start += 1
    while end > start and m.string[end - 1] in _EDGE:
        end -= 1
    return start, end


def _filtered(value: str) -> bool:
    """detect-secrets' default value filters (``detect-secrets scan`` runs them on every hit)."""
    return (is_sequential_string(value) or is_potential_uuid(value) or is_templated_secret(value)
            or is_prefixed_with_dollar_sign(value) or is_not_alphanumeric_string(value))


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character, as gitleaks computes it."""
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in Counter(value).values()) if size else 0.0
