"""Deterministic response bodies for every Batch API endpoint.

Shapes follow the real endpoint responses (``chat.completion``, ``response``, ``list`` of
``embedding``, ``text_completion``, moderation results, image and video objects) including a
``usage`` block, so consumers parse what they would parse in production. Everything is derived
from the request body and a stable key, never from time or randomness: the same input file
always yields the same results, which is what lets tests compare them.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import Callable
from typing import Any

from airflow_provider_openai_batch.testing.ids import derived_id

JsonObject = dict[str, Any]

PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
"""A one-pixel PNG: image results only need to be valid base64 image data."""

MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: words and punctuation marks, at least one."""
    return max(1, len(_TOKEN.findall(text)))


def content_text(content: object) -> str:
    """The text of a message ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def last_user_text(items: object) -> str:
    """The last ``role: user`` message's text in ``messages`` (chat) or ``input`` (responses)."""
    if isinstance(items, str):
        return items
    if not isinstance(items, list):
        return ""
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return content_text(item.get("content"))
    return ""


def _all_text(items: object) -> str:
    if isinstance(items, str):
        return items
    if isinstance(items, list):
        return " ".join(_all_text(item) for item in items)
    if isinstance(items, dict):
        return content_text(items.get("content")) or _all_text(items.get("text", ""))
    return ""


def echo_text(endpoint: str, body: JsonObject) -> str:
    """The default assistant answer: ``echo: <last user text>``."""
    if endpoint == "/v1/chat/completions":
        return "echo: " + last_user_text(body.get("messages"))
    if endpoint == "/v1/responses":
        return "echo: " + last_user_text(body.get("input"))
    return "echo: " + _all_text(body.get("prompt"))


def chat_completion(body: JsonObject, text: str, *, key: str, created: int) -> JsonObject:
    prompt_tokens = sum(count_tokens(_all_text(m)) + 3 for m in body.get("messages") or [] if isinstance(m, dict))
    completion_tokens = count_tokens(text)
    return {
        "id": derived_id("chatcmpl-", key, hex_chars=24),
        "object": "chat.completion",
        "created": created,
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }


def response_object(body: JsonObject, text: str, *, key: str, created: int) -> JsonObject:
    input_tokens = count_tokens(_all_text(body.get("input")) + " " + str(body.get("instructions") or ""))
    output_tokens = count_tokens(text)
    return {
        "id": derived_id("resp_", key),
        "object": "response",
        "created_at": created,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "model": body.get("model"),
        "output": [
            {
                "type": "message",
                "id": derived_id("msg_", key),
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "temperature": body.get("temperature", 1.0),
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "metadata": body.get("metadata") or {},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def text_completion(body: JsonObject, text: str, *, key: str, created: int) -> JsonObject:
    prompt_tokens = count_tokens(_all_text(body.get("prompt")))
    completion_tokens = count_tokens(text)
    return {
        "id": derived_id("cmpl-", key, hex_chars=24),
        "object": "text_completion",
        "created": created,
        "model": body.get("model"),
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


TEXT_BODIES: dict[str, Callable[..., JsonObject]] = {
    "/v1/chat/completions": chat_completion,
    "/v1/responses": response_object,
    "/v1/completions": text_completion,
}
"""Endpoints whose answer is a text: a responder may return just that text for them."""


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector derived from a hash of the input: equal texts get equal vectors."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{model}\x1f{text}\x1f{counter}".encode()).digest()
        values.extend(word / 2**31 - 1.0 for word in struct.unpack("<8I", digest))
        counter += 1
    vector = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 8) for v in vector]


def _embedding_items(value: object) -> list[str]:
    if isinstance(value, list) and value and not all(isinstance(item, int) for item in value):
        return [item if isinstance(item, str) else repr(item) for item in value]
    return [value if isinstance(value, str) else repr(value)]


def embeddings(body: JsonObject, *, key: str, created: int) -> JsonObject:
    model = str(body.get("model"))
    dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 8
    as_base64 = body.get("encoding_format") == "base64"
    items = _embedding_items(body.get("input"))
    data: list[JsonObject] = []
    for index, text in enumerate(items):
        vector = embedding_vector(model, text, dimensions)
        encoded: object = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count_tokens(text) for text in items)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def moderation(body: JsonObject, *, key: str, created: int) -> JsonObject:
    value = body.get("input")
    items = value if isinstance(value, list) and not any(isinstance(v, dict) for v in value) else [value]
    result = {
        "flagged": False,
        "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(MODERATION_CATEGORIES, 1e-06),
        "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
    }
    return {
        "id": derived_id("modr-", key, hex_chars=24),
        "model": body.get("model") or "omni-moderation-latest",
        "results": [dict(result) for _ in items],
    }


def image(body: JsonObject, *, key: str, created: int) -> JsonObject:
    count = body.get("n") if isinstance(body.get("n"), int) else 1
    prompt_tokens = count_tokens(str(body.get("prompt") or ""))
    return {
        "created": created,
        "data": [{"b64_json": PNG_1X1} for _ in range(count)],
        "usage": {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
            "output_tokens": 272 * count,
            "total_tokens": prompt_tokens + 272 * count,
        },
    }


def video(body: JsonObject, *, key: str, created: int) -> JsonObject:
    return {
        "id": derived_id("video_", key),
        "object": "video",
        "model": body.get("model") or "sora-2",
        "status": "completed",
        "progress": 100,
        "created_at": created,
        "completed_at": created,
        "expires_at": created + 24 * 3600,
        "prompt": body.get("prompt"),
        "seconds": str(body.get("seconds") or "4"),
        "size": body.get("size") or "720x1280",
        "remixed_from_video_id": None,
        "error": None,
    }


OTHER_BODIES: dict[str, Callable[..., JsonObject]] = {
    "/v1/embeddings": embeddings,
    "/v1/moderations": moderation,
    "/v1/images/generations": image,
    "/v1/images/edits": image,
    "/v1/videos": video,
}


def default_body(endpoint: str, body: JsonObject, *, key: str, created: int) -> JsonObject:
    """The fake's answer to one request when no responder scripts it."""
    text_body = TEXT_BODIES.get(endpoint)
    if text_body is not None:
        return text_body(body, echo_text(endpoint, body), key=key, created=created)
    return OTHER_BODIES[endpoint](body, key=key, created=created)


def request_error(status: int, body: JsonObject) -> JsonObject:
    """The ``response.body`` of a per-request failure with ``status`` (for ``fail_requests``)."""
    model = body.get("model")
    if status == 400:
        error = {
            "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    elif status == 404:
        error = {
            "message": f"The model '{model}' does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    elif status == 429:
        error = {
            "message": "Rate limit reached for requests.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    elif status >= 500:
        error = {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    else:
        error = {
            "message": f"Request failed with status {status}.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    return {"error": error}


def usage_of(body: JsonObject) -> tuple[int, int, int, int, int]:
    """``(input, cached, output, reasoning, total)`` tokens of one response body, whatever its style."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return (0, 0, 0, 0, 0)
    input_tokens = usage.get("input_tokens", usage.get("prompt_tokens", 0)) or 0
    output_tokens = usage.get("output_tokens", usage.get("completion_tokens", 0)) or 0
    input_details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or usage.get("completion_tokens_details") or {}
    total = usage.get("total_tokens", input_tokens + output_tokens) or 0
    return (
        int(input_tokens),
        int(input_details.get("cached_tokens", 0) or 0),
        int(output_tokens),
        int(output_details.get("reasoning_tokens", 0) or 0),
        int(total),
    )
