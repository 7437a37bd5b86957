"""Which LLM API a captured request was for (issue 19): the provider, by the host first and then by
the path and the body's shape; the endpoint, the model, whether it streamed, and the token counts
the response states.

Everything read here was chosen by a local program (host, path, headers, bodies; a local server
chooses the response): it is data, returned as-is within bounds (a model name of at most 100
characters), never a format string or code. Nothing raises on any input: JSON that does not parse
(a body cut at the capture limit, or garbage) falls back to a bounded scan of its first bytes for
"model" and "stream"; a compressed response is inflated only for gzip/deflate and to at most 1 MiB.

Where the field names come from (the providers' API references):
- OpenAI Chat Completions / Completions / Embeddings: ``usage.prompt_tokens`` and
  ``usage.completion_tokens``; streamed, the last chunk before ``data: [DONE]`` carries ``usage``
  when the request set ``stream_options.include_usage`` (the other chunks have ``"usage": null``).
  The Responses API: ``usage.input_tokens`` / ``usage.output_tokens``, streamed in the
  ``response.completed`` event's ``response.usage``.
- Anthropic Messages: ``usage.input_tokens`` / ``usage.output_tokens``; streamed, the
  ``message_start`` event carries ``message.usage`` and ``message_delta`` the running ``usage``.
- Gemini (and Vertex AI) generateContent: ``usageMetadata.promptTokenCount`` and
  ``candidatesTokenCount``, in every chunk of ``:streamGenerateContent`` (``alt=sse`` or a JSON
  array); the last one holds the totals.
- Cohere: v1 ``meta.billed_units.input_tokens``/``output_tokens`` (streamed: the ``stream-end``
  event's ``response.meta``), v2 ``usage.billed_units`` (streamed: ``message-end``'s
  ``delta.usage``).
- Ollama: ``prompt_eval_count`` / ``eval_count``; streamed as NDJSON, on the final line
  (``"done": true``). Ollama streams unless the request says ``"stream": false``.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from collectors.llm_traffic.exchange import Exchange

log = logging.getLogger(__name__)

MODEL_MAX = 100              # characters of a model name kept
PATH_MAX = 2048              # characters of a request target looked at
HOST_MAX = 300               # characters of a host looked at (a DNS name has at most 253)
SCAN_BYTES = 64 * 1024       # a body that does not parse: how much of it the tolerant scan reads
INFLATE_MAX = 1 * 2**20      # a compressed body: at most this much is inflated
MAX_OBJECTS = 10_000         # JSON documents read from one streamed response

ENDPOINTS = ("chat", "completions", "messages", "responses", "embeddings", "generate", "models",
             "images", "audio", "moderations", "other")


@dataclass(frozen=True)
class Classified:
    """What a captured request was: provider (a label from PROVIDERS, or one of the shape-matched
    ``*-compatible`` labels and "Ollama"), a short stable ``provider_key``, the endpoint (one of
    ENDPOINTS), the model ("" if none was found), whether the answer streamed, the token counts the
    response stated (None when it did not, was cut, or was compressed with br/zstd), and whether the
    host was this machine (``local``: such requests do not leave for the cloud)."""

    provider: str
    provider_key: str
    endpoint: str
    model: str
    streaming: bool
    input_tokens: int | None
    output_tokens: int | None
    local: bool


@dataclass(frozen=True)
class ProviderDecl:
    """One known API host: a pattern the whole (lower-cased) host must match and, for hosts that
    also serve other things, a pattern the start of the path must match."""

    label: str
    key: str
    host: str
    path: str | None = None


PROVIDERS: tuple[ProviderDecl, ...] = (
    ProviderDecl("OpenAI", "openai", r"api\.openai\.com"),
    ProviderDecl("Azure OpenAI", "azure_openai", r"[a-z0-9][a-z0-9-]*\.openai\.azure\.com"),
    # the same suffix serves Speech, Vision, Translator...: only its /openai/ paths are Azure OpenAI
    ProviderDecl("Azure OpenAI", "azure_openai", r"[a-z0-9][a-z0-9-]*\.cognitiveservices\.azure\.com",
                 r"/openai/"),
    ProviderDecl("Anthropic", "anthropic", r"api\.anthropic\.com"),
    ProviderDecl("Google Gemini", "google_gemini", r"generativelanguage\.googleapis\.com"),
    # Vertex AI is a separate product (a Google Cloud project, its own billing and data terms);
    # only its model endpoints (publishers' models, deployed endpoints) are LLM calls
    ProviderDecl("Google Vertex AI", "google_vertex", r"(?:[a-z0-9-]+-)?aiplatform\.googleapis\.com",
                 r"/v1(?:beta1)?/projects/[^/]+/locations/[^/]+/(?:publishers|endpoints)/"),
    ProviderDecl("Mistral", "mistral", r"(?:api|codestral)\.mistral\.ai"),
    ProviderDecl("Cohere", "cohere", r"api\.cohere\.(?:com|ai)"),
    ProviderDecl("Groq", "groq", r"api\.groq\.com"),
    ProviderDecl("OpenRouter", "openrouter", r"openrouter\.ai", r"/api/"),
    ProviderDecl("DeepSeek", "deepseek", r"api\.deepseek\.com"),
    ProviderDecl("Together AI", "together", r"api\.together\.(?:xyz|ai)"),
    ProviderDecl("Fireworks AI", "fireworks", r"api\.fireworks\.ai", r"/inference/"),
    ProviderDecl("Perplexity", "perplexity", r"api\.perplexity\.ai"),
    ProviderDecl("xAI", "xai", r"api\.x\.ai"),
    ProviderDecl("Ollama", "ollama", r"(?:www\.)?ollama\.com", r"/api/"),    # Ollama's cloud models
)
_PROVIDERS = tuple((d, re.compile(d.host), re.compile(d.path) if d.path else None) for d in PROVIDERS)

# The endpoint, from the end of the (lower-cased) path; the first match wins.
ENDPOINT_PATHS: tuple[tuple[str, str], ...] = (
    ("chat", r"/chat/completions$"),
    ("chat", r":(?:stream)?generatecontent$"),                        # Gemini, Vertex AI
    ("messages", r"/publishers/anthropic/models/[^/]+:(?:stream)?rawpredict$"),  # Claude on Vertex
    ("embeddings", r":(?:batch)?embedcontents?$|/embeddings$|/embed$"),
    ("completions", r"/completions$|/complete$"),                     # incl. Mistral's /fim/
    ("messages", r"/messages$"),
    ("responses", r"/responses(?:/[^/]+)?$"),
    ("generate", r"/generate$"),                                      # Ollama, Cohere v1
    ("chat", r"/chat$"),                                              # Ollama, Cohere v1/v2
    ("images", r"/images/(?:generations|edits|variations)$"),
    ("audio", r"/audio/(?:transcriptions|translations|speech)$"),
    ("moderations", r"/moderations$"),
    ("models", r"/models(?:/[^/:]+)?$|/api/tags$"),
)
_ENDPOINT_PATHS = tuple((name, re.compile(pattern)) for name, pattern in ENDPOINT_PATHS)

# Unknown hosts: the path and the body's shape must both say "LLM API".
_OPENAI_PATH = re.compile(r"/v1/(?:chat/completions|completions|embeddings|responses)$"
                          r"|/chat/completions$")
_OLLAMA_PATH = re.compile(r"/api/(?:chat|generate|embed|embeddings)$")
_ANTHROPIC_PATH = re.compile(r"/v1/messages$")
_GEMINI_PATH = re.compile(r"/(?:tuned)?models/[^/:]+:(?:stream)?generatecontent$")

_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/")
_URL_MODEL = re.compile(r"/(?:tuned)?models/([^/:]+):[a-z]+$", re.IGNORECASE)

# the tolerant scan of a body that does not parse; the look-behind skips keys inside a string
_SCAN_KEYS = re.compile(rb'(?<!\\)"(model|messages|prompt|input|max_tokens|contents|stream)"\s*:')
_SCAN_MODEL = re.compile(rb'(?<!\\)"model"\s*:\s*"((?:[^"\\]|\\.){0,400})"')
_SCAN_STREAM = re.compile(rb'(?<!\\)"stream"\s*:\s*(true|false)')
_USAGE_HINT = re.compile(rb"usage|eval_count|billed_units", re.IGNORECASE)

# (where, input key, output key) of the token counts, in the order tried on each JSON document
_USAGE_PATHS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("usage",), "prompt_tokens", "completion_tokens"),           # OpenAI and compatible
    (("usage",), "input_tokens", "output_tokens"),                # Anthropic, Responses API
    (("message", "usage"), "input_tokens", "output_tokens"),      # Anthropic message_start
    (("response", "usage"), "input_tokens", "output_tokens"),     # Responses response.completed
    (("usageMetadata",), "promptTokenCount", "candidatesTokenCount"),  # Gemini, Vertex AI
    (("meta", "billed_units"), "input_tokens", "output_tokens"),  # Cohere v1
    (("response", "meta", "billed_units"), "input_tokens", "output_tokens"),  # v1 stream-end
    (("usage", "billed_units"), "input_tokens", "output_tokens"),  # Cohere v2
    (("delta", "usage", "billed_units"), "input_tokens", "output_tokens"),  # v2 message-end
    ((), "prompt_eval_count", "eval_count"),                      # Ollama
)


@dataclass(frozen=True)
class _Body:
    """What a request body says about itself: its top-level keys, model and stream flag."""

    keys: frozenset[str]
    model: str
    stream: bool | None


def classify(ex: Exchange) -> Classified | None:
    """The LLM API request ``ex`` was, or None when it was none (or not recognisably one)."""
    try:
        return _classify(ex)
    except Exception:  # a bug here must cost one exchange, never the capture loop
        log.debug("classification failed", exc_info=True)
        return None


def _classify(ex: Exchange) -> Classified | None:
    host = _norm_host(ex.host)
    path, query = _split_target(ex.path)
    lpath = path.lower()
    body = _request_body(ex)
    decl = _known(host, path)
    if decl is not None:
        label, key = decl.label, decl.key
    else:
        shape = _by_shape(lpath, body, ex.request_headers)
        if shape is None:
            return None
        label, key = shape
    endpoint = next((name for name, pattern in _ENDPOINT_PATHS if pattern.search(lpath)), "other")
    objects = list(_response_objects(ex))
    model = _model(path, body, objects)
    ctype = ex.response_headers.get("content-type", "").lower()
    streaming = (body.stream is True or ":streamgeneratecontent" in lpath
                 or ":streamrawpredict" in lpath or "alt=sse" in query.lower().split("&")
                 or ctype.startswith(("text/event-stream", "application/x-ndjson")))
    if key == "ollama" and endpoint in ("chat", "generate") and body.stream is None and body.keys:
        streaming = True        # Ollama streams by default
    input_tokens, output_tokens = _tokens(objects)
    return Classified(label, key, endpoint, model, streaming, input_tokens, output_tokens,
                      _is_local(host))


def _norm_host(host: str) -> str:
    return host[:HOST_MAX].strip().lower().rstrip(".")


def _split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target; an absolute-form target loses its scheme and authority."""
    target = target[:PATH_MAX]
    if target.lower().startswith(("http://", "https://")):
        rest = target.split("//", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    path, _, query = target.partition("?")
    return unquote(path.partition("#")[0]), query.partition("#")[0]


def _known(host: str, path: str) -> ProviderDecl | None:
    for decl, by_host, by_path in _PROVIDERS:
        if by_host.fullmatch(host) and (by_path is None or by_path.match(path)):
            return decl
    return None


def _by_shape(lpath: str, body: _Body, headers: dict[str, str]) -> tuple[str, str] | None:
    """An unknown host: (label, key) when the path and the body are those of an LLM API."""
    if "anthropic-version" in headers:
        return "Anthropic-compatible", "anthropic_compatible"
    if _OLLAMA_PATH.search(lpath) and "model" in body.keys:
        return "Ollama", "ollama"
    if (_OPENAI_PATH.search(lpath) and "model" in body.keys
            and body.keys & {"messages", "prompt", "input"}):
        return "OpenAI-compatible", "openai_compatible"
    if _ANTHROPIC_PATH.search(lpath) and {"max_tokens", "messages"} <= body.keys:
        return "Anthropic-compatible", "anthropic_compatible"
    if _GEMINI_PATH.search(lpath) and "contents" in body.keys:
        return "Gemini-compatible", "gemini_compatible"
    return None


def decoded_request(ex: Exchange) -> bytes | None:
    """The request body as the server reads it (gzip/deflate inflated, at most 1 MiB): what the
    secret scan reads; None when its encoding cannot be read here (br, zstd)."""
    return _decoded(ex.request_body, ex.request_headers)


def _request_body(ex: Exchange) -> _Body:
    data = decoded_request(ex)
    if data is None:
        return _Body(frozenset(), "", None)
    doc = _json(data) if data.lstrip()[:1] == b"{" else None
    if isinstance(doc, dict):
        model = doc.get("model")
        stream = doc.get("stream")
        return _Body(frozenset(doc), model[:MODEL_MAX] if isinstance(model, str) else "",
                     stream if isinstance(stream, bool) else None)
    head = data[:SCAN_BYTES]
    keys = frozenset(m.decode() for m in _SCAN_KEYS.findall(head))
    found = _SCAN_MODEL.search(head)
    model = _unescape(found.group(1))[:MODEL_MAX] if found else ""
    flag = _SCAN_STREAM.search(head)
    return _Body(keys, model, flag.group(1) == b"true" if flag else None)


def _unescape(raw: bytes) -> str:
    """A JSON string's inside, decoded; as UTF-8 text when its escapes do not decode."""
    text = raw.decode("utf-8", "replace")
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _decoded(body: bytes, headers: dict[str, str]) -> bytes | None:
    """The body without its Content-Encoding (gzip/deflate only); None when it cannot be read."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, 31)
    if encoding == "deflate":   # zlib-wrapped as the RFC says, or raw as some servers send it
        inflated = _inflate(body, 15)
        return inflated if inflated is not None else _inflate(body, -15)
    return None                 # br, zstd, or a chain of encodings


def _inflate(data: bytes, wbits: int) -> bytes | None:
    try:
        return zlib.decompressobj(wbits).decompress(data, INFLATE_MAX)
    except zlib.error:
        return None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):     # not JSON, cut short, or nested past the stack
        return None


def _response_objects(ex: Exchange) -> Iterator[dict[str, Any]]:
    """The response's JSON documents that may state usage: the whole body, the elements of a JSON
    array (Gemini's streamed form), or the lines of an SSE or NDJSON stream."""
    data = _decoded(ex.response_body, ex.response_headers)
    if not data:
        return
    if data.lstrip()[:1] in (b"{", b"["):
        doc = _json(data)
        if isinstance(doc, dict):
            yield doc
            return
        if isinstance(doc, list):
            yield from (item for item in doc[-MAX_OBJECTS:] if isinstance(item, dict))
            return
    count = 0
    for line in data.splitlines():
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].lstrip()
        if line[:1] != b"{" or not _USAGE_HINT.search(line):
            continue
        doc = _json(line)
        if isinstance(doc, dict):
            yield doc
            count += 1
            if count >= MAX_OBJECTS:
                return


def _dig(doc: Any, keys: Iterable[str]) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        return value
    return None


def _usage(doc: dict[str, Any]) -> tuple[int | None, int | None]:
    for where, in_key, out_key in _USAGE_PATHS:
        part = _dig(doc, where)
        if isinstance(part, dict):
            counts = _count(part.get(in_key)), _count(part.get(out_key))
            if counts != (None, None):
                return counts
    return None, None


def _tokens(objects: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """The counts the response states; in a stream, the last stated value of each wins."""
    input_tokens = output_tokens = None
    for doc in objects:
        found_in, found_out = _usage(doc)
        input_tokens = found_in if found_in is not None else input_tokens
        output_tokens = found_out if found_out is not None else output_tokens
    return input_tokens, output_tokens


def _model(path: str, body: _Body, objects: list[dict[str, Any]]) -> str:
    """Azure's deployment or Gemini's model from the URL, else the body's, else the response's."""
    for pattern in (_AZURE_DEPLOYMENT, _URL_MODEL):
        found = pattern.search(path)
        if found:
            return found.group(1)[:MODEL_MAX]
    if body.model:
        return body.model
    for doc in objects:
        for where in (("model",), ("message", "model"), ("response", "model"), ("modelVersion",)):
            value = _dig(doc, where)
            if isinstance(value, str) and value:
                return value[:MODEL_MAX]
    return ""


def _is_local(host: str) -> bool:
    """The host is this machine: localhost, a loopback or the unspecified address."""
    host = host.strip("[]")
    if host in ("localhost", "ip6-localhost", "ip6-loopback") or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified
