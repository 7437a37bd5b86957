"""Captured LLM API requests: which provider, endpoint, model and token counts (providers.py), and
which secrets a prompt carries (secrets.py). The exchanges follow the shapes of the providers' API
references; every secret is a documented example or made up here, at run time."""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import shutil
import string
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.llm_traffic import providers, secrets
from collectors.llm_traffic.exchange import Exchange
from collectors.llm_traffic.providers import Classified, classify

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def exchange(host: str, path: str, request: Any = None, response: Any = None, *,
             method: str = "POST", req_headers: dict[str, str] | None = None,
             resp_headers: dict[str, str] | None = None, status: int | None = 200,
             truncated: bool = False) -> Exchange:
    """An exchange as the capture makes it; dict/list bodies are sent as JSON, str as text."""
    def raw(body: Any) -> bytes:
        if body is None:
            return b""
        if isinstance(body, bytes):
            return body
        return body.encode() if isinstance(body, str) else json.dumps(body).encode()
    ctype = "application/json"
    if isinstance(response, str) and response.startswith(("data:", "event:")):
        ctype = "text/event-stream"
    return Exchange(pid=4242, comm="python3", exe="/usr/bin/python3.11", container="", sni=host,
                    http_version="1.1", method=method, path=path, authority=host,
                    request_headers={"content-type": "application/json", **(req_headers or {})},
                    request_body=raw(request), request_truncated=truncated,
                    status=status if response is not None else None,
                    response_headers={"content-type": ctype, **(resp_headers or {})},
                    response_body=raw(response))


def sse(*events: Any, named: bool = False, done: bool = False) -> str:
    """A text/event-stream body: one data line per event (after its ``event:`` line if named)."""
    out = []
    for event in events:
        if named:
            out.append(f"event: {event['type']}\n")
        out.append(f"data: {json.dumps(event)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are terse."},
                                             {"role": "user", "content": "Why is the sky blue?"}]}
CHAT_RESPONSE = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
    "created": 1741569952, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Rayleigh scattering."},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
    "service_tier": "default"}


def chat_chunks(model: str = "gpt-4o-mini-2024-07-18", usage: bool = True) -> str:
    """A streamed chat completion; with ``stream_options.include_usage`` the last chunk before
    [DONE] has empty choices and the usage, and every other chunk ``"usage": null``."""
    base = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
            "model": model, "system_fingerprint": "fp_44709d6fcb"}
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": None}], "usage": None},
        {**base, "choices": [{"index": 0, "delta": {"content": "Rayleigh"},
                              "finish_reason": None}], "usage": None},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}]
    if usage:
        chunks.append({**base, "choices": [],
                       "usage": {"prompt_tokens": 19, "completion_tokens": 2, "total_tokens": 21}})
    return sse(*chunks, done=True)


def check(cl: Classified | None, provider: str, key: str, endpoint: str, model: str,
          streaming: bool, tokens: tuple[int | None, int | None], local: bool = False) -> None:
    assert cl is not None
    assert (cl.provider, cl.provider_key, cl.endpoint, cl.model, cl.streaming,
            (cl.input_tokens, cl.output_tokens), cl.local) == (
        provider, key, endpoint, model, streaming, tokens, local)


# --- OpenAI, its compatible providers, Azure ----------------------------------------------------

def test_openai_chat_completion() -> None:
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT, CHAT_RESPONSE))
    check(cl, "OpenAI", "openai", "chat", "gpt-4o-mini", False, (19, 10))


def test_openai_streamed_chat_takes_the_usage_of_the_last_chunk() -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", request, chat_chunks()))
    check(cl, "OpenAI", "openai", "chat", "gpt-4o-mini", True, (19, 2))
    without = classify(exchange("api.openai.com", "/v1/chat/completions", {**CHAT, "stream": True},
                                chat_chunks(usage=False)))
    check(without, "OpenAI", "openai", "chat", "gpt-4o-mini", True, (None, None))


def test_openai_responses_api_plain_and_streamed() -> None:
    request = {"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story."}
    response = {"id": "resp_67ccd2bed1ec8190", "object": "response", "created_at": 1741476542,
                "status": "completed", "model": "gpt-4.1-2025-04-14",
                "output": [{"type": "message", "id": "msg_67ccd2bf17f0", "status": "completed",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": "Once upon...",
                                         "annotations": []}]}],
                "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": 123}}
    cl = classify(exchange("api.openai.com", "/v1/responses", request, response))
    check(cl, "OpenAI", "openai", "responses", "gpt-4.1", False, (36, 87))

    created = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-4.1",
               "usage": None}
    stream = sse({"type": "response.created", "sequence_number": 0, "response": created},
                 {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1",
                  "output_index": 0, "content_index": 0, "delta": "Once"},
                 {"type": "response.completed", "sequence_number": 2,
                  "response": {**created, "status": "completed",
                               "usage": {"input_tokens": 36, "output_tokens": 87,
                                         "total_tokens": 123}}}, named=True)
    cl = classify(exchange("api.openai.com", "/v1/responses", {**request, "stream": True}, stream))
    check(cl, "OpenAI", "openai", "responses", "gpt-4.1", True, (36, 87))


def test_openai_embeddings_state_input_tokens_only() -> None:
    request = {"model": "text-embedding-3-small", "input": "The food was delicious",
               "encoding_format": "float"}
    response = {"object": "list", "data": [{"object": "embedding", "index": 0,
                                            "embedding": [0.0023064255, -0.009327292]}],
                "model": "text-embedding-3-small", "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    cl = classify(exchange("api.openai.com", "/v1/embeddings", request, response))
    check(cl, "OpenAI", "openai", "embeddings", "text-embedding-3-small", False, (5, None))


@pytest.mark.parametrize(("path", "endpoint"), [
    ("/v1/models", "models"), ("/v1/models/gpt-4o", "models"), ("/v1/completions", "completions"),
    ("/v1/images/generations", "images"), ("/v1/audio/transcriptions", "audio"),
    ("/v1/moderations", "moderations"), ("/v1/files", "other"), ("/v1/fine_tuning/jobs", "other"),
])
def test_openai_endpoints(path: str, endpoint: str) -> None:
    cl = classify(exchange("api.openai.com", path, method="GET"))
    assert cl is not None and cl.endpoint == endpoint and cl.provider_key == "openai"


@pytest.mark.parametrize("host", ["contoso-eastus.openai.azure.com",
                                  "contoso.cognitiveservices.azure.com"])
def test_azure_openai_takes_the_deployment_from_the_url(host: str) -> None:
    request = {"messages": CHAT["messages"], "max_tokens": 100}
    response = {**CHAT_RESPONSE, "model": "gpt-4o-2024-08-06", "prompt_filter_results": []}
    cl = classify(exchange(host, "/openai/deployments/gpt4o-prod/chat/completions"
                                 "?api-version=2024-10-21", request, response))
    check(cl, "Azure OpenAI", "azure_openai", "chat", "gpt4o-prod", False, (19, 10))


def test_azure_cognitive_services_other_than_openai_are_not_llm_requests() -> None:
    speech = exchange("contoso.cognitiveservices.azure.com",
                      "/speechtotext/transcriptions:transcribe?api-version=2024-11-15",
                      {"locales": ["en-US"]})
    assert classify(speech) is None


@pytest.mark.parametrize(("host", "path", "label", "key"), [
    ("api.mistral.ai", "/v1/chat/completions", "Mistral", "mistral"),
    ("api.groq.com", "/openai/v1/chat/completions", "Groq", "groq"),
    ("openrouter.ai", "/api/v1/chat/completions", "OpenRouter", "openrouter"),
    ("api.deepseek.com", "/chat/completions", "DeepSeek", "deepseek"),
    ("api.together.xyz", "/v1/chat/completions", "Together AI", "together"),
    ("api.fireworks.ai", "/inference/v1/chat/completions", "Fireworks AI", "fireworks"),
    ("api.perplexity.ai", "/chat/completions", "Perplexity", "perplexity"),
    ("api.x.ai", "/v1/chat/completions", "xAI", "xai"),
    ("generativelanguage.googleapis.com", "/v1beta/openai/chat/completions", "Google Gemini",
     "google_gemini"),
])
def test_openai_shaped_providers_by_host(host: str, path: str, label: str, key: str) -> None:
    request = {**CHAT, "model": "some-model-v2"}
    cl = classify(exchange(host, path, request, CHAT_RESPONSE))
    check(cl, label, key, "chat", "some-model-v2", False, (19, 10))
    streamed = classify(exchange(host, path, {**request, "stream": True}, chat_chunks()))
    check(streamed, label, key, "chat", "some-model-v2", True, (19, 2))


def test_mistral_fim_is_a_completion() -> None:
    request = {"model": "codestral-latest", "prompt": "def fib(n):", "suffix": "return a"}
    cl = classify(exchange("api.mistral.ai", "/v1/fim/completions", request, CHAT_RESPONSE))
    check(cl, "Mistral", "mistral", "completions", "codestral-latest", False, (19, 10))


def test_openrouter_web_pages_are_not_api_requests() -> None:
    assert classify(exchange("openrouter.ai", "/models?order=newest", method="GET")) is None


# --- Anthropic ---------------------------------------------------------------------------------

MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello, Claude"}]}
MESSAGE = {"id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
           "model": "claude-sonnet-4-5-20250929",
           "content": [{"type": "text", "text": "Hi! My name is Claude."}],
           "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 10, "output_tokens": 12, "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 0}}


def anthropic_stream() -> str:
    return sse(
        {"type": "message_start", "message": {**MESSAGE, "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 25, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 15}},
        {"type": "message_stop"}, named=True)


def test_anthropic_messages_plain_and_streamed() -> None:
    headers = {"anthropic-version": "2023-06-01"}
    cl = classify(exchange("api.anthropic.com", "/v1/messages", MESSAGES, MESSAGE,
                           req_headers=headers))
    check(cl, "Anthropic", "anthropic", "messages", "claude-sonnet-4-5", False, (10, 12))
    streamed = classify(exchange("api.anthropic.com", "/v1/messages", {**MESSAGES, "stream": True},
                                 anthropic_stream(), req_headers=headers))
    check(streamed, "Anthropic", "anthropic", "messages", "claude-sonnet-4-5", True, (25, 15))


def test_anthropic_token_counting_and_batches_are_other_endpoints() -> None:
    for path in ("/v1/messages/count_tokens", "/v1/messages/batches"):
        cl = classify(exchange("api.anthropic.com", path, MESSAGES, {"input_tokens": 14}))
        assert cl is not None and cl.endpoint == "other" and cl.provider == "Anthropic"


def test_anthropic_shaped_requests_to_other_hosts() -> None:
    cl = classify(exchange("llm-gateway.corp.example", "/v1/messages", MESSAGES, MESSAGE))
    check(cl, "Anthropic-compatible", "anthropic_compatible", "messages", "claude-sonnet-4-5",
          False, (10, 12))
    by_header = classify(exchange("proxy.example.net", "/claude/v1/messages", {"model": "x"},
                                  req_headers={"anthropic-version": "2023-06-01"}))
    assert by_header is not None and by_header.provider_key == "anthropic_compatible"
    # DeepSeek's Anthropic-shaped endpoint is still DeepSeek
    deepseek = classify(exchange("api.deepseek.com", "/anthropic/v1/messages", MESSAGES, MESSAGE))
    check(deepseek, "DeepSeek", "deepseek", "messages", "claude-sonnet-4-5", False, (10, 12))


# --- Google: Gemini and Vertex AI --------------------------------------------------------------

GEMINI_REQUEST = {"contents": [{"role": "user", "parts": [{"text": "Explain how AI works"}]}],
                  "generationConfig": {"temperature": 0.2}}


def gemini_chunk(text: str, prompt: int, candidates: int | None, finish: bool = False) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt,
                             "totalTokenCount": prompt + (candidates or 0)}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"},
                                 "index": 0}
    if finish:
        candidate["finishReason"] = "STOP"
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.0-flash",
            "responseId": "bW8eaNnGOsG"}


def test_gemini_generate_content_takes_the_model_from_the_url() -> None:
    path = "/v1beta/models/gemini-2.0-flash:generateContent"
    cl = classify(exchange("generativelanguage.googleapis.com", path, GEMINI_REQUEST,
                           gemini_chunk("AI learns patterns.", 8, 12, finish=True)))
    check(cl, "Google Gemini", "google_gemini", "chat", "gemini-2.0-flash", False, (8, 12))


def test_gemini_streamed_as_sse_and_as_a_json_array() -> None:
    chunks = [gemini_chunk("AI", 8, None), gemini_chunk(" learns", 8, 3),
              gemini_chunk(" patterns.", 8, 12, finish=True)]
    path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    cl = classify(exchange("generativelanguage.googleapis.com", path + "?alt=sse", GEMINI_REQUEST,
                           sse(*chunks)))
    check(cl, "Google Gemini", "google_gemini", "chat", "gemini-2.5-pro", True, (8, 12))
    array = classify(exchange("generativelanguage.googleapis.com", path, GEMINI_REQUEST,
                              "[" + ",\r\n".join(json.dumps(c) for c in chunks) + "]"))
    check(array, "Google Gemini", "google_gemini", "chat", "gemini-2.5-pro", True, (8, 12))


def test_gemini_embeddings_and_model_listing() -> None:
    embed = classify(exchange("generativelanguage.googleapis.com",
                              "/v1beta/models/text-embedding-004:embedContent",
                              {"content": {"parts": [{"text": "Hello world"}]}}))
    assert embed is not None and (embed.endpoint, embed.model) == ("embeddings", "text-embedding-004")
    listing = classify(exchange("generativelanguage.googleapis.com", "/v1beta/models?pageSize=50",
                                method="GET"))
    assert listing is not None and (listing.endpoint, listing.model) == ("models", "")


def test_vertex_ai_gemini_and_claude() -> None:
    base = "/v1/projects/my-project/locations/us-central1/publishers"
    cl = classify(exchange("us-central1-aiplatform.googleapis.com",
                           f"{base}/google/models/gemini-1.5-pro-002:generateContent",
                           GEMINI_REQUEST, gemini_chunk("Hi", 4, 2, finish=True)))
    check(cl, "Google Vertex AI", "google_vertex", "chat", "gemini-1.5-pro-002", False, (4, 2))
    request = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 256, "stream": True,
               "messages": [{"role": "user", "content": "Hey Claude!"}]}
    claude = classify(exchange("us-east5-aiplatform.googleapis.com",
                               base.replace("us-central1", "us-east5")
                               + "/anthropic/models/claude-3-5-sonnet-v2@20241022:streamRawPredict",
                               request, anthropic_stream()))
    check(claude, "Google Vertex AI", "google_vertex", "messages", "claude-3-5-sonnet-v2@20241022",
          True, (25, 15))
    # Vertex AI's other services (datasets, training) are not model calls
    assert classify(exchange("us-central1-aiplatform.googleapis.com",
                             "/v1/projects/p/locations/us-central1/datasets", {"x": 1})) is None


def test_gemini_shaped_requests_to_other_hosts() -> None:
    cl = classify(exchange("gemini-proxy.example.org", "/v1beta/models/gemini-2.0-flash:generateContent",
                           GEMINI_REQUEST, gemini_chunk("x", 3, 1)))
    check(cl, "Gemini-compatible", "gemini_compatible", "chat", "gemini-2.0-flash", False, (3, 1))


# --- Cohere -----------------------------------------------------------------------------------

def test_cohere_v2_chat_plain_and_streamed() -> None:
    request = {"model": "command-r-plus-08-2024", "messages": [{"role": "user", "content": "hello"}]}
    response = {"id": "2b1de636-9884-4973-ba11-108f95a2d37f",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                "finish_reason": "COMPLETE",
                "usage": {"billed_units": {"input_tokens": 21, "output_tokens": 93},
                          "tokens": {"input_tokens": 186, "output_tokens": 93}}}
    cl = classify(exchange("api.cohere.com", "/v2/chat", request, response))
    check(cl, "Cohere", "cohere", "chat", "command-r-plus-08-2024", False, (21, 93))
    stream = sse({"type": "message-start", "id": "29f14a5a",
                  "delta": {"message": {"role": "assistant", "content": []}}},
                 {"type": "content-delta", "index": 0,
                  "delta": {"message": {"content": {"text": "Hi"}}}},
                 {"type": "message-end", "delta": {
                     "finish_reason": "COMPLETE",
                     "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 7},
                               "tokens": {"input_tokens": 70, "output_tokens": 7}}}}, named=True)
    streamed = classify(exchange("api.cohere.com", "/v2/chat", {**request, "stream": True}, stream))
    check(streamed, "Cohere", "cohere", "chat", "command-r-plus-08-2024", True, (5, 7))


def test_cohere_v1_chat_plain_and_streamed() -> None:
    request = {"model": "command-r", "message": "Hello", "chat_history": []}
    meta = {"api_version": {"version": "1"},
            "billed_units": {"input_tokens": 17, "output_tokens": 12},
            "tokens": {"input_tokens": 215, "output_tokens": 12}}
    response = {"text": "Hi there", "generation_id": "c5f3", "finish_reason": "COMPLETE",
                "meta": meta}
    cl = classify(exchange("api.cohere.ai", "/v1/chat", request, response))
    check(cl, "Cohere", "cohere", "chat", "command-r", False, (17, 12))
    ndjson = "\n".join(json.dumps(e) for e in (
        {"is_finished": False, "event_type": "stream-start", "generation_id": "c5f3"},
        {"is_finished": False, "event_type": "text-generation", "text": "Hi"},
        {"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
         "response": {"text": "Hi", "meta": meta}})) + "\n"
    streamed = classify(exchange("api.cohere.com", "/v1/chat", {**request, "stream": True}, ndjson,
                                 resp_headers={"content-type": "application/stream+json"}))
    check(streamed, "Cohere", "cohere", "chat", "command-r", True, (17, 12))
    embed = classify(exchange("api.cohere.com", "/v2/embed", {"model": "embed-v4.0", "texts": ["x"]}))
    assert embed is not None and embed.endpoint == "embeddings"


# --- Ollama and unknown hosts -------------------------------------------------------------------

def test_ollama_chat_streams_ndjson_by_default() -> None:
    lines = [{"model": "llama3.2", "created_at": "2024-08-07T03:57:33.03Z",
              "message": {"role": "assistant", "content": "Hello"}, "done": False},
             {"model": "llama3.2", "created_at": "2024-08-07T03:57:37.07Z",
              "message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": True,
              "total_duration": 4353619900, "load_duration": 63915300, "prompt_eval_count": 26,
              "prompt_eval_duration": 246847000, "eval_count": 298, "eval_duration": 4032296000}]
    request = {"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky blue?"}]}
    body = "".join(json.dumps(line) + "\n" for line in lines)
    cl = classify(exchange("localhost:11434", "/api/chat", request, body,
                           resp_headers={"content-type": "application/x-ndjson"}))
    check(cl, "Ollama", "ollama", "chat", "llama3.2", True, (26, 298), local=True)
    # no response seen yet: still streaming, as Ollama does unless told otherwise
    pending = classify(exchange("127.0.0.1:11434", "/api/chat", request))
    check(pending, "Ollama", "ollama", "chat", "llama3.2", True, (None, None), local=True)


def test_ollama_generate_not_streamed_and_behind_a_proxy_prefix() -> None:
    request = {"model": "qwen2.5:7b", "prompt": "Why?", "stream": False}
    response = {"model": "qwen2.5:7b", "response": "Because.", "done": True,
                "prompt_eval_count": 4, "eval_count": 9}
    cl = classify(exchange("[::1]:11434", "/api/generate", request, response))
    check(cl, "Ollama", "ollama", "generate", "qwen2.5:7b", False, (4, 9), local=True)
    remote = classify(exchange("gpu-box.lan", "/ollama/api/embed",
                               {"model": "nomic-embed-text", "input": "x"}))
    check(remote, "Ollama", "ollama", "embeddings", "nomic-embed-text", False, (None, None))


@pytest.mark.parametrize(("host", "path", "local"), [
    ("localhost:8000", "/v1/chat/completions", True),              # vLLM, llama.cpp, LM Studio
    ("127.0.0.1:1234", "/v1/completions", True),
    ("inference.home.arpa", "/openai/v1/chat/completions", False),
    ("webui.example.com", "/api/v1/chat/completions", False),
    ("litellm.internal", "/chat/completions", False),
    ("[::ffff:127.0.0.1]:5000", "/v1/responses", True),
    ("0.0.0.0:8080", "/v1/embeddings", True),
])
def test_openai_compatible_servers_by_path_and_body(host: str, path: str, local: bool) -> None:
    request = {"model": "Qwen/Qwen2.5-7B-Instruct", "prompt": "x", "messages": CHAT["messages"],
               "input": "x"}
    cl = classify(exchange(host, path, request, CHAT_RESPONSE))
    assert cl is not None
    assert (cl.provider, cl.provider_key, cl.model, cl.local) == (
        "OpenAI-compatible", "openai_compatible", "Qwen/Qwen2.5-7B-Instruct", local)
    assert (cl.input_tokens, cl.output_tokens) == (19, 10)


@pytest.mark.parametrize(("host", "path", "body"), [
    ("api.github.com", "/repos/octo/hello/issues", {"title": "Bug", "body": "It broke",
                                                   "labels": ["bug"]}),
    ("hooks.slack.com", "/services/T000/B000/XXXX", {"text": "deploy done"}),
    ("api.example.com", "/v1/chat/completions", {"text": "hi"}),             # no model
    ("api.example.com", "/v1/chat/completions", {"model": "x"}),             # nothing to complete
    ("api.example.com", "/v2/items/generate", {"model": "x", "prompt": "y"}),  # a generic path
    ("api.example.com", "/api/users", {"model": "x"}),
    ("registry.npmjs.org", "/-/npm/v1/security/advisories/bulk", {"model": ["1.0.0"]}),
    ("api.example.com", "/v1/messages", {"to": "+15551234", "body": "hi"}),  # an SMS API
])
def test_other_requests_are_not_llm_requests(host: str, path: str, body: Any) -> None:
    assert classify(exchange(host, path, body, {"ok": True})) is None


# --- truncated, compressed, and garbage bodies --------------------------------------------------

def test_a_truncated_request_still_gives_model_stream_and_shape() -> None:
    request = {"model": "gpt-4o", "stream": True,
               "messages": [{"role": "user", "content": "x" * 50_000}]}
    body = json.dumps(request).encode()[:4096]
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", body, truncated=True))
    check(cl, "OpenAI", "openai", "chat", "gpt-4o", True, (None, None))
    unknown = classify(exchange("10.0.0.5:8000", "/v1/chat/completions", body, truncated=True))
    assert unknown is not None and (unknown.provider_key, unknown.model) == ("openai_compatible",
                                                                            "gpt-4o")
    # a key inside a message is not the request's
    quoted = json.dumps({"messages": [{"role": "user", "content": '{"model": "fake"}' + "y" * 9000}],
                         "model": "real"}).encode()[:2000]
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", quoted, truncated=True))
    assert cl is not None and cl.model == ""


def test_a_truncated_response_has_no_tokens() -> None:
    body = json.dumps(CHAT_RESPONSE).encode()
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT, body[:len(body) // 2]))
    check(cl, "OpenAI", "openai", "chat", "gpt-4o-mini", False, (None, None))


def test_compressed_responses() -> None:
    body = json.dumps(CHAT_RESPONSE).encode()
    gz = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT, gzip.compress(body),
                           resp_headers={"content-encoding": "gzip"}))
    check(gz, "OpenAI", "openai", "chat", "gpt-4o-mini", False, (19, 10))
    import zlib
    for deflated in (zlib.compress(body), zlib.compress(body)[2:-4]):     # zlib-wrapped, raw
        cl = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT, deflated,
                               resp_headers={"content-encoding": "deflate"}))
        assert cl is not None and (cl.input_tokens, cl.output_tokens) == (19, 10)
    br = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT, b"\x1b\x03\x00garbage",
                           resp_headers={"content-encoding": "br"}))
    check(br, "OpenAI", "openai", "chat", "gpt-4o-mini", False, (None, None))
    # a gzip bomb inflates to at most INFLATE_MAX
    bomb = gzip.compress(b"{" + b" " * (50 * 2**20))
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT, bomb,
                           resp_headers={"content-encoding": "gzip"}))
    assert cl is not None and cl.input_tokens is None
    request = classify(exchange("api.openai.com", "/v1/chat/completions",
                                gzip.compress(json.dumps(CHAT).encode()),
                                req_headers={"content-encoding": "gzip"}))
    assert request is not None and request.model == "gpt-4o-mini"


def test_names_are_bounded_and_kept_as_data() -> None:
    model = "{0.__class__}%s%n<script>" + "m" * 500
    cl = classify(exchange("api.openai.com", "/v1/chat/completions", {**CHAT, "model": model}))
    assert cl is not None and cl.model == model[:providers.MODEL_MAX]
    url = classify(exchange("generativelanguage.googleapis.com",
                            "/v1beta/models/" + "g" * 300 + ":generateContent", GEMINI_REQUEST))
    assert url is not None and len(url.model) == providers.MODEL_MAX
    nested = classify(exchange("api.openai.com", "/v1/chat/completions", CHAT,
                               b"[" * 100_000 + b"]" * 100_000))
    assert nested is not None and nested.input_tokens is None


@FUZZ
@given(host=st.one_of(st.sampled_from(["api.openai.com", "localhost", "[::1]:80", "", "x.openai.azure.com",
                                       "generativelanguage.googleapis.com"]), st.text(max_size=80)),
       path=st.one_of(st.sampled_from(["/v1/chat/completions", "/api/chat", "/v1/messages",
                                       "/v1beta/models/m:streamGenerateContent?alt=sse",
                                       "https://h/openai/deployments/d/x", "/%ff%00?#"]),
                      st.text(max_size=120)),
       headers=st.dictionaries(
           st.sampled_from(["content-encoding", "content-type", "anthropic-version", "x"]),
           st.sampled_from(["gzip", "deflate", "br", "text/event-stream", "application/x-ndjson", ""]),
           max_size=3),
       request=st.one_of(st.binary(max_size=300),
                         st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                      lambda kids: st.lists(kids, max_size=4)
                                      | st.dictionaries(st.sampled_from(["model", "stream", "messages",
                                                                         "prompt", "input"]),
                                                        kids, max_size=4),
                                      max_leaves=12).map(lambda v: json.dumps(v).encode())),
       response=st.one_of(st.binary(max_size=300),
                          st.builds(lambda b: gzip.compress(b)[:len(b)], st.binary(max_size=200)),
                          st.sampled_from([b"data: {\"usage\": {\"prompt_tokens\": true}}\n",
                                           b"{\"usage\": {\"input_tokens\": -1, \"output_tokens\": 1e999}}",
                                           b"[{\"usageMetadata\": []}, 3]",
                                           b"{\"prompt_eval_count\": 18446744073709551616}"])))
def test_classification_never_raises(host: str, path: str, headers: dict[str, str], request: bytes,
                                     response: bytes) -> None:
    ex = Exchange(pid=1, comm="x", exe="", container="", sni=host, http_version="2", method="POST",
                  path=path, authority=host, request_headers=headers, request_body=request,
                  response_headers=headers, response_body=response, status=200)
    cl = providers._classify(ex)        # the unguarded body: a bug must show here, not be swallowed
    if cl is not None:
        assert cl.endpoint in providers.ENDPOINTS
        assert len(cl.model) <= providers.MODEL_MAX
        for count in (cl.input_tokens, cl.output_tokens):
            assert count is None or (isinstance(count, int) and count >= 0)


# --- secrets ------------------------------------------------------------------------------------

RNG = random.Random(19)
ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


LOWER_HEX = "0123456789abcdef"
# Every value is made up here (or is a vendor's documented example), from pieces, so that no
# scanner of this repository mistakes the test for a leak.
AWS_ID, AWS_SECRET = "AKIA" + "IOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")     # Azurite's published development-storage key
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
       "aWF0IjoxNTE2MjM5MDIyfQ." + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
CASES: list[tuple[str, str, str]] = [    # (type, the secret, a prompt line that holds it)
    ("AWS Access Key", AWS_ID, "my ~/.aws/credentials has aws_access_key_id = {s}, why 403?"),
    ("AWS Access Key", AWS_SECRET, 'boto3.client("s3", aws_secret_access_key="{s}")'),
    ("Azure Storage Account access key", AZURITE_KEY,
     "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey={s};"),
    ("Basic Auth Credentials", "password", "DATABASE_URL=postgres://user:{s}@db.internal/app"),
    ("Basic Auth Credentials", "hunter2x9", "git clone https://alice:{s}@git.example.com/r.git"),
    ("Discord Bot Token", "M" + rand(25) + "." + rand(6) + "." + rand(27), "DISCORD_TOKEN={s}"),
    ("GitHub Token", "ghp_" + rand(36), "export GITHUB_TOKEN={s}"),
    ("GitLab Token", "glpat-" + rand(20), "curl --header 'PRIVATE-TOKEN: {s}' https://gitlab.com"),
    ("JSON Web Token", JWT, "Authorization: Bearer {s}"),
    ("Mailchimp Access Key", rand(32, LOWER_HEX) + "-us14", "mailchimp key {s}"),
    ("NPM tokens", "npm_" + rand(36), "//registry.npmjs.org/:_authToken={s}"),
    ("OpenAI Token", "sk-proj-" + rand(20) + "T3Blbk" + "FJ" + rand(20), "OPENAI_API_KEY={s}"),
    ("OpenAI Token", "sk-proj-" + rand(74, ALNUM + "-_") + "T3Blbk" + "FJ" + "_" + rand(73),
     "client = OpenAI(api_key='{s}')"),
    ("PyPI Token", "pypi-" + "AgEIcHlwaS5vcmc" + rand(80), "[pypi]\npassword = {s}"),
    ("SendGrid API Key", "SG." + rand(22) + "." + rand(43), "SENDGRID_API_KEY={s}"),
    ("Slack Token", "xoxb-" + "123456789012-1234567890123-" + rand(24).lower(), "token: {s}"),
    ("Slack Token", "https://hooks.slack.com/services/T" + rand(8).upper() + "/B" + rand(8).upper()
     + "/" + rand(24), "post to {s}"),
    ("Square OAuth Secret", "sq0csp-" + rand(43), "SQUARE_SECRET={s}"),
    ("Stripe Access Key", "sk_" + "live_" + rand(24), "stripe.api_key = '{s}'"),
    ("Telegram Bot Token", "1234567890:" + "AA" + rand(33), "bot = Bot(token='{s}')"),
    ("Twilio API Key", "AC" + rand(32, LOWER_HEX), "account_sid = '{s}'"),
    ("Twilio API Key", "SK" + rand(32, LOWER_HEX), "twilio key {s}"),
    ("IBM Cloud IAM Key", rand(44), 'ibm_cloud_iam_api_key = "{s}"'),
    ("IBM COS HMAC Credentials", rand(48, LOWER_HEX), "cos_hmac_secret_access_key: {s}"),
    ("SoftLayer Credentials", rand(64, string.ascii_lowercase + string.digits),
     'softlayer_api_key = "{s}"'),
    ("Cloudant Credentials", rand(64, LOWER_HEX), "https://acme:{s}@acme.cloudant.com/db"),
    ("Artifactory Credentials", "AKCp" + rand(69), "artifactory_api_key: {s}"),
    ("Anthropic API Key", "sk-ant-api03-" + rand(93, ALNUM + "-_") + "AA",
     "ANTHROPIC_API_KEY={s} claude"),
    ("Google API Key", "AIza" + "Sy" + rand(33, ALNUM + "-_"),
     "https://generativelanguage.googleapis.com/v1beta/models?key={s}"),
    ("Hugging Face Token", "hf_" + rand(34, string.ascii_letters), "HF_TOKEN={s}"),
]
PROMPT = ("I'm debugging this deployment. Here is the config and the error:\n\n{line}\n\n"
          "Traceback (most recent call last):\n  File \"app.py\", line 12, in <module>\n"
          "PermissionError: denied\nWhat is wrong?")


def chat_body(text: str, **extra: Any) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a senior SRE."},
        {"role": "user", "content": text}], **extra}).encode()


@pytest.mark.parametrize(("kind", "secret", "line"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_secret_type_is_found_and_never_sampled(kind: str, secret: str, line: str) -> None:
    body = chat_body(PROMPT.format(line=line.replace("{s}", secret)))
    assert kind in secrets.find_secrets(body)
    sample = secrets.redacted_sample(body, limit=100_000)
    assert "<secret:" in sample         # its own type, or another found at the same place
    assert secret not in sample and secret not in json.dumps(sample)


def keygen(tmp_path: Path, *args: str) -> str:
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen is not installed: make apt-test installs it (openssh-client)")
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", "test", "-f", str(key), *args], check=True,
                   capture_output=True, timeout=60)
    return key.read_text()


@pytest.mark.parametrize("args", [("-t", "ed25519"), ("-t", "rsa", "-b", "2048", "-m", "PEM"),
                                  ("-t", "ecdsa", "-m", "PKCS8")])
def test_a_private_key_split_across_json_escaped_newlines(tmp_path: Path, args: tuple[str, ...]) -> None:
    key = keygen(tmp_path, *args)
    body = chat_body(f"My server rejects this key, why?\n{key}\nThanks")
    assert b"PRIVATE KEY-----\\n" in body         # the key's lines are joined by JSON's \n
    assert secrets.find_secrets(body) == ["Private Key"]
    sample = secrets.redacted_sample(body, limit=100_000)
    assert "rejects this key, why?\n<secret:Private Key>\n\nThanks" in sample
    for line in key.splitlines()[1:-1]:
        assert line not in sample
    assert secrets.find_secrets(body[:300]) == ["Private Key"]       # cut short: the header alone
    assert key.splitlines()[1] not in secrets.redacted_sample(body[:300], limit=10_000)


def test_escapes_that_hide_a_secret_from_the_raw_text() -> None:
    # a JSON encoder that escapes '/' (PHP, some Java ones) and non-ASCII: the URL is only a URL
    # once the escapes are undone
    body = (b'{"model":"x","messages":[{"role":"user",'
            b'"content":"db: postgres:\\/\\/app:s3cr3t\\u00e9@db\\/x"}]}')
    assert secrets.find_secrets(body) == ["Basic Auth Credentials"]
    assert "s3cr3t" not in secrets.redacted_sample(body, 1000)
    # a token right after an escaped newline: Artifactory's pattern wants whitespace before it
    token = "AKCp" + rand(69)
    assert "Artifactory Credentials" in secrets.find_secrets(chat_body(f"key:\n{token}"))


def image_prompt() -> str:
    png = b"\x89PNG\r\n\x1a\n" + random.Random(7).randbytes(48 * 1024)
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                            + base64.b64encode(png).decode()}}]}]})


CLEAN_CODE = '''
import os, hashlib, uuid
from dataclasses import dataclass

API_KEY = os.environ["OPENAI_API_KEY"]          # read from the environment, never written here
password = getpass.getpass("Password: ")
DSN = f"postgres://{user}:{password}@{host}:5432/{db}"
URL = "postgres://${DB_USER}:${DB_PASSWORD}@localhost/app"
token = request.headers["Authorization"]

@dataclass
class Config:
    api_key: str = ""
    secret_key: str = "<your secret key here>"
    timeout_s: float = 10.0

def digest(data: bytes) -> str:
    """sha256 of the data, as hex."""
    # e.g. 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    return hashlib.sha256(data).hexdigest()
'''


@pytest.mark.parametrize("prompt", [
    "Why is the sky blue? Answer in two sentences.",
    CLEAN_CODE,
    "Request ids: " + ", ".join(str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(200)),
    "Checksums:\n" + "\n".join(f"{hashlib.sha256(str(i).encode()).hexdigest()}  file{i}.tar.gz"
                               for i in range(200)),
    "git log:\n" + "\n".join(f"{hashlib.sha1(str(i).encode()).hexdigest()} fix #{i}" for i in range(300)),
    "Visit https://example.com/docs?page=2#setup and http://localhost:8080/health",
    "The meeting is at 10:30, room 12345678: bring the 1234567890 report",
    "SELECT id, name FROM users WHERE email = 'a@example.com' AND password_hash IS NOT NULL;",
], ids=["prose", "code", "uuids", "sha256", "git-log", "urls", "numbers", "sql"])
def test_prompts_without_secrets(prompt: str) -> None:
    assert secrets.find_secrets(chat_body(prompt)) == []


def test_base64_image_data_is_not_a_secret() -> None:
    assert secrets.find_secrets(image_prompt().encode()) == []


def test_sample_is_bounded_and_decoded() -> None:
    body = chat_body("line one\nline two é " + "z" * 1000)
    sample = secrets.redacted_sample(body)
    assert len(sample) == 200 and "line one\nline two é" in sample
    assert secrets.redacted_sample(body, limit=0) == ""
    assert secrets.redacted_sample(b"") == "" and secrets.find_secrets(b"") == []
    # a secret past the scanned bound is not looked for
    far = b" " * secrets.SCAN_BYTES + ("ghp_" + rand(36)).encode()
    assert secrets.find_secrets(far) == []


def test_secret_types_are_sorted_and_once_each() -> None:
    text = " ".join(["ghp_" + rand(36), "ghp_" + rand(36), AWS_ID, "SG." + rand(22) + "." + rand(43)])
    assert secrets.find_secrets(chat_body(text)) == ["AWS Access Key", "GitHub Token", "SendGrid API Key"]


def reference_types(body: bytes) -> set[str]:
    """detect-secrets' plugins run plainly over the whole text (both views), with the same value
    filters, and our rules: what the shortcuts of secrets.py must not change."""
    raw, unescaped = secrets._texts(body)
    found = set()
    for text in {raw, unescaped}:
        for plugin in secrets.PLUGINS:
            for regex in plugin.denylist:
                for m in regex.finditer(text):
                    start, end = secrets._secret_span(m)
                    value = text[start:end]
                    if secrets._filtered(value):
                        continue
                    if (plugin.secret_type == "JSON Web Token"
                            and not secrets.JwtTokenDetector.is_formally_valid(value)):
                        continue
                    found.add(plugin.secret_type)
        found |= {kind for kind, _, _ in secrets._findings(text, first_only=False) if kind in {
            r.secret_type for r in secrets.EXTRA_RULES}}
    return found


def test_the_shortcuts_find_what_the_plain_scan_finds() -> None:
    bodies = [chat_body(PROMPT.format(line=line.replace("{s}", secret))) for _, secret, line in CASES]
    bodies += [chat_body(CLEAN_CODE), image_prompt().encode(),
               chat_body("\u212aey = 'AKC" + rand(12) + "' ſoftlayer_api_key=" + rand(64).lower()),
               chat_body("İBM_API_KEY: " + rand(44) + "\n x AP1" + rand(10) + " y -us9"),
               # long lines: the assignment patterns' windows, their edges and look-aheads
               chat_body(" ".join([rand(3000, ALNUM + " "), 'ibm_api_key = "' + rand(44) + '"',
                                   rand(2000, ALNUM + " "), "softlayer_api_key" + " " * 300 + "= "
                                   + rand(64).lower(), "cos_hmac_secret_access_key:" + rand(48, LOWER_HEX),
                                   "cloudant_password='" + rand(64, LOWER_HEX) + "x'",
                                   "iam_token: " + rand(45), "cl-apikey=" + rand(24).lower()])),
               # the assignment patterns' separators, good and bad
               chat_body("\n".join([
                   f"password   :=   '{rand(44)}'", f"secret_key  =>  {rand(48, LOWER_HEX)}",
                   f'["ibm_api_key"] = "{rand(44)}"', f"key     {rand(44)}", f"token = > {rand(44)}",
                   f"pwd: '{rand(44)}x", f"cl_pw:{rand(64, LOWER_HEX)}", f"sl-apitoken = {rand(64).lower()}",
                   f"softlayerkey={rand(64).lower()}"])),
               # NPM's and JWT's finders, private key blocks
               chat_body("//a//b/:_authToken=npm_" + rand(36) + "\n//x/:_authToken=" + str(uuid.uuid4())
                         + "\n/:_authToken=npm_x //late"),
               chat_body("eyJnotajwt eyJaaa" + JWT + " and " + JWT + "." + JWT),
               chat_body("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
                         "BEGIN EC PRIVATE KEY then BEGIN DSA PRIVATE KEY, no end")]
    for body in bodies:
        assert set(secrets.find_secrets(body)) == reference_types(body), body[:200]


@pytest.mark.timeout(120)      # a guard against a hang, not a measure: each takes well under 1 s
@pytest.mark.parametrize("text", [
    "eyJ" * 90_000, ("eyJ" * 1000 + ".") * 90, "//" * 130_000 + "/:_authToken=npm_x",
    "xoxb-" + "1-" * 130_000, "api_key" + " " * 200_000 + "!", ("key" + " " * 60 + "!") * 4000,
    ("key" + " " * 200 + "> " + "a" * 44 + " ") * 1000, "https://u:p@h " * 18_000,
    "BEGIN RSA PRIVATE KEY " * 12_000, "1" * 260_000, "M" * 260_000, "aws" + "key" * 87_000,
], ids=["jwt-run", "jwt-dots", "npm", "slack", "spaces", "keys-spaces", "bad-between", "urls",
        "key-headers", "digits", "discord", "aws"])
def test_pathological_prompts_are_scanned_in_linear_time(text: str) -> None:
    body = text.encode()
    secrets.find_secrets(body)
    assert len(secrets.redacted_sample(body)) <= 200


@FUZZ
@given(st.one_of(st.binary(max_size=2000),
                 st.text(alphabet=st.sampled_from(list('\\"un/ :=-_@AKCPIS0123456789abcdefxo\n\u0130\u212a')),
                         max_size=400).map(str.encode)))
def test_secret_scanning_never_raises(body: bytes) -> None:
    found = secrets.find_secrets(body)
    assert found == sorted(set(found))
    assert len(secrets.redacted_sample(body, limit=50)) <= 50
