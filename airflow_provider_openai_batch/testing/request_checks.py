"""Per-request body checks: what the endpoint itself rejects once the batch runs the request.

The service checks a batch file in two places, and the fake copies where each rule lives:

* While ``validating`` (``validation.py``), per line, all-or-nothing: JSON, ``custom_id`` /
  ``method`` / ``url`` / ``body``, ``body.model`` known (``model_not_found``), one model per batch,
  no streaming, and the endpoint's top-level required parameter ("Messages parameter is
  required.", ``param`` ``body.messages``). Behaviour reference section 4.2, observed against OpenAI.
* While ``in_progress`` (here): a request that passed validation is sent to its endpoint, and
  what that endpoint rejects becomes a line of the error file with ``response.status_code`` 400 and
  ``response.body.error{message, type, param, code}``, ``"error": null`` (reference section 4.3, and
  the issue that found a chat request without ``role``/``content`` answered this way). The other
  requests of the batch still run.

The messages and params follow the synchronous endpoints' own 400s: ``Missing required parameter:
'messages[0].role'.`` with ``param`` ``messages[0].role`` and ``code`` ``missing_required_parameter``
is observed from OpenAI (third-party reports of the chat endpoint); ``invalid_type`` /
``invalid_value`` reuse the wording the fake already uses for the batch endpoints (reference
section 2), and ``empty_array`` follows OpenAI's style for an empty list. The exact texts of those
three for message bodies are inferred, not recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_openai_batch.testing.errors import ApiError, invalid_type, invalid_value, missing_parameter

CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
"""``ChatCompletionRequestMessage`` roles of the spec, in the order OpenAI's message lists them."""

RESPONSES_ROLES = ("user", "assistant", "system", "developer")
"""Roles of a Responses ``input`` message item (``EasyInputMessage``)."""

RESPONSES_INPUT_ALTERNATIVES = ("prompt", "previous_response_id", "conversation")
"""A Responses request may take its input from a stored prompt or an earlier response instead."""


def _empty_array(param: str) -> ApiError:
    return ApiError(
        400,
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        param=param,
        code="empty_array",
    )


def _message_problem(message: object, param: str, roles: tuple[str, ...]) -> ApiError | None:
    """A chat message (or Responses message item) needs a known ``role`` and a ``content``."""
    if not isinstance(message, dict):
        return invalid_type(param, "an object", message)
    if "role" not in message:
        return missing_parameter(f"{param}.role")
    if message["role"] not in roles:
        return invalid_value(f"{param}.role", message["role"], roles)
    calls_tools = message["role"] == "assistant" and (message.get("tool_calls") or message.get("function_call"))
    content = message.get("content")
    if content is None and not calls_tools:
        return missing_parameter(f"{param}.content")
    if content is not None and not isinstance(content, str | list):
        return invalid_type(f"{param}.content", "one of a string or array of objects", content)
    return None


def _chat(body: dict[str, Any]) -> ApiError | None:
    messages = body["messages"]  # present: validation rejects a line without it
    if not isinstance(messages, list):
        return invalid_type("messages", "an array", messages)
    if not messages:
        return _empty_array("messages")
    for index, message in enumerate(messages):
        problem = _message_problem(message, f"messages[{index}]", CHAT_ROLES)
        if problem is not None:
            return problem
    return None


def _responses(body: dict[str, Any]) -> ApiError | None:
    items = body.get("input")
    if items is None:
        if any(body.get(name) is not None for name in RESPONSES_INPUT_ALTERNATIVES):
            return None
        return missing_parameter("input")
    if isinstance(items, str):
        return None
    if not isinstance(items, list):
        return invalid_type("input", "one of a string or array of input items", items)
    for index, item in enumerate(items):
        is_message = isinstance(item, dict) and ("role" in item or item.get("type") == "message")
        if is_message or not isinstance(item, dict):
            problem = _message_problem(item, f"input[{index}]", RESPONSES_ROLES)
            if problem is not None:
                return problem
    return None


def _text_or_list(param: str, expected: str) -> Callable[[dict[str, Any]], ApiError | None]:
    """``input`` / ``prompt``: a string or a non-empty array (presence is checked at validation)."""

    def check(body: dict[str, Any]) -> ApiError | None:
        value = body[param]
        if isinstance(value, str):
            return None
        if not isinstance(value, list):
            return invalid_type(param, expected, value)
        if not value:
            return _empty_array(param)
        return None

    return check


BODY_CHECKS: dict[str, Callable[[dict[str, Any]], ApiError | None]] = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/embeddings": _text_or_list("input", "one of a string or array of strings or token arrays"),
    "/v1/moderations": _text_or_list("input", "one of a string or array of strings or objects"),
    "/v1/completions": _text_or_list("prompt", "one of a string or array of strings or token arrays"),
}
"""The endpoints whose request bodies the fake checks per request (the others are not checked)."""


def request_problem(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """``(400, {"error": ...})`` if the endpoint would reject ``body``; ``None`` if it would answer it."""
    check = BODY_CHECKS.get(endpoint)
    problem = check(body) if check is not None else None
    return None if problem is None else (problem.status, problem.body())
